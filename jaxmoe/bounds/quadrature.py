r"""Quadrature for $\|g\|_{L^2(\mu)}^2 = \int g(x)^2 \, d\mu(x) \approx \sum_q w_q\, g(x_q)^2$.

For the input laws of `jaxmoe.data` on a box $[\text{low}, \text{high}]^d$: a tensor Gauss-Legendre rule with
`nodes` points per axis, the weights times the law's density (uniform: $1/(\text{high}-\text{low})^d$;
truncated normal: the normal density normalised on the box, renormalised so the weights sum to 1).
Gauss-Legendre with q nodes is exact for polynomials of degree $\le 2q - 1$ per axis; for the smooth
integrands of MoE regression functions its error falls geometrically in q. `quadrature_error` states it
for a given integrand by comparing q against 2q nodes.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
from jaxtyping import Array, Float

from jaxmoe.data import TruncatedNormalInputs, UniformInputs
from jaxmoe.validation import require, require_positive_int

__all__ = ["Quadrature", "quadrature", "quadrature_error"]

MAX_NODES = 200_000  # tensor rules past this are too large to evaluate per optimiser step


class Quadrature(NamedTuple):
    """Nodes `x` (d, q), the sample axis last as everywhere in jaxmoe, and weights `w` (q,) summing to 1."""

    x: Float[Array, "d q"]
    w: Float[Array, "q"]


def quadrature(inputs, d: int, nodes: int = 96) -> Quadrature:
    """Tensor Gauss-Legendre rule for the law `inputs` in dimension `d` with `nodes` points per axis."""
    d = require_positive_int("d", d)
    nodes = require_positive_int("nodes", nodes, 2)
    require(nodes ** d <= MAX_NODES, "nodes", nodes, f"nodes**d must be <= {MAX_NODES} (d = {d})")
    require(isinstance(inputs, (UniformInputs, TruncatedNormalInputs)), "inputs", type(inputs).__name__,
            "must be UniformInputs or TruncatedNormalInputs")
    inputs.validate()
    t, wt = np.polynomial.legendre.leggauss(nodes)
    half = 0.5 * (inputs.high - inputs.low)
    axis = inputs.low + half * (t + 1.0)
    weight = wt * half
    if isinstance(inputs, TruncatedNormalInputs):
        weight = weight * np.exp(-0.5 * (axis / inputs.std) ** 2)
    grid = np.array(list(itertools.product(axis, repeat=d))).T
    w = np.prod(np.array(list(itertools.product(weight, repeat=d))), axis=1)
    return Quadrature(grid.reshape(d, -1), w / np.sum(w))


def quadrature_error(fn, inputs, d: int, nodes: int) -> float:
    """|rule(q) - rule(2q)| / rule(2q) for $\\int fn(x)\\, d\\mu$: the relative error of the q-node rule."""
    coarse, fine = quadrature(inputs, d, nodes), quadrature(inputs, d, 2 * nodes)
    a, b = float(np.sum(coarse.w * np.asarray(fn(coarse.x)))), float(np.sum(fine.w * np.asarray(fn(fine.x))))
    return abs(a - b) / max(abs(b), np.finfo(float).tiny)
