r"""Flat (one-level) gating: $f_G(x) = \sum_{i=1}^k \pi_i(x)\, h(x, \eta_i)$, the shared part of the softmax,
dense-to-sparse and sigmoid families.

Each atom i has a logit $\ell_i(x) = (g(x, \beta_{1i}) + \beta_{0i}) / \tau$ (router g, temperature $\tau$; the
softmax family has $g(x, \beta_1) = \beta_1^\top x$ and $\tau = 1$), and the gates $\pi = \gamma(\ell)$ are the
family's (`gates`): softmax over atoms, or an elementwise sigmoid.

**Structured Jacobian.** With $f = \sum_i \pi_i h_i$: $\partial f/\partial h_i = \pi_i$, and $\partial f / \partial
\ell_i = \pi_i (h_i - f)$ for softmax gates, $\pi_i (1 - \pi_i) h_i$ for sigmoid gates; atom i's logit and
expert depend on atom i's parameters only. So the $n \times p$ Jacobian needs per-sample derivatives of one
router and one expert in one atom's parameters ($p/k$ tangents each), instead of $p$ tangent passes through
the whole model (`jax.jacfwd`), each of which evaluates all k atoms: about k times less work. Columns are in
`jax.flatten_util.ravel_pytree(params)` order.

**Cells.** Voronoi cells are taken on $\omega_i = (\beta_{1i}, \eta_i)$ flattened (every router and expert leaf,
dict keys in sorted order); the weights of the mixing measure are $e^{\beta_{0i}/\tau}$.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxmoe.families import cells as vc
from jaxmoe.families.base import (
    MoEFamily,
    atoms,
    shape_tree,
    jacobian_columns,
    per_atom_jacobian,
    scale_leaves,
    split_assignment,
    split_level,
)
from jaxmoe.models.experts import get_expert
from jaxmoe.models.gates import Router, linear_router
from jaxmoe.validation import require_positive_int

__all__ = ["FlatMoE", "linear_gate_parts", "linear_gate_d1"]


def linear_gate_parts(params):
    r"""Weights $e^{\beta_0}$, gate blocks $\beta_1$ and atoms $\omega = (\beta_1, \eta)$ of a linear-gate measure."""
    gate = jnp.asarray(params.beta1)
    return jnp.exp(jnp.asarray(params.beta0)), gate, jnp.concatenate([gate, vc.flat(params.eta, 1)], axis=-1)


def linear_gate_d1(fitted, truth):
    """The D1 form (eq. 6) of two linear-gate measures (already checked and normalised)."""
    w, gate, omega = linear_gate_parts(fitted)
    ws, gs, os_ = linear_gate_parts(truth)
    eta, eta_s = vc.flat(fitted.eta, 1), vc.flat(truth.eta, 1)
    return vc.cell_loss(w, ws, omega, os_, [gate, eta], [gs, eta_s], "d1")[0]


class FlatMoE(MoEFamily):
    """Shared one-level behaviour; a subclass fixes the gates (`gates`, `logit_coefficient`) and the router."""

    expert: Any
    k: int

    def __post_init__(self):
        object.__setattr__(self, "expert", get_expert(self.expert))
        require_positive_int("k", self.k)
        require_positive_int("d", self.d)

    def param_shapes(self):
        """(beta0 (k,), beta1 (k, d), eta (k, ...)): a linear router's shapes; a family with another router or a
        temperature says its own."""
        return self.params_type((self.k,), (self.k, self.d), shape_tree(self.expert.param_shapes(self.d), (self.k,)))

    def with_k(self, k: int):
        return dataclasses.replace(self, k=k)

    def _box_bounds(self):
        """Gate fields in [-gate, gate], `eta` in [-expert, expert], a temperature `tau` in box.tau."""
        shapes = self.param_shapes()
        lo, hi = {}, {}
        for name in type(shapes)._fields:
            s = getattr(shapes, name)
            if name == "tau":
                lo[name], hi[name] = jnp.asarray(self.box.tau[0]), jnp.asarray(self.box.tau[1])
            else:
                lo[name], hi[name] = (self.box.expert_bounds if name == "eta" else self.box.gate_bounds)(s)
        return type(shapes)(**lo), type(shapes)(**hi)

    @property
    def num_atoms(self) -> int:
        return self.k

    @property
    def components(self) -> int:
        return self.k

    @property
    def gate_router(self) -> Router:
        """The router g of the logits (linear unless the family says otherwise)."""
        return linear_router()

    @staticmethod
    def temperature(params):
        """The temperature $\\tau$ of the logits (1 unless the family has one)."""
        return 1.0

    def experts(self, params, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        return atoms(self.expert.fn, params.eta, x)

    def __call__(self, params, x: Float[Array, "d n"]) -> Float[Array, "n"]:
        self._check_x(x)
        self.validate(params)
        return self.combine(self.logits(params, x), self.experts(params, x))

    # ---- the family's gates
    def combine(self, logits: Float[Array, "k n"], values: Float[Array, "k n"]) -> Float[Array, "n"]:
        r"""$\sum_i \pi_i(\text{logits})\, \text{values}_i$."""
        raise NotImplementedError  # pragma: no cover

    def gates(self, logits: Float[Array, "k n"]) -> Float[Array, "k n"]:
        raise NotImplementedError  # pragma: no cover

    def logit_coefficient(self, w, h, f):
        r"""$\partial f / \partial \ell_i$ from the gates w, expert values h and $f$."""
        raise NotImplementedError  # pragma: no cover

    def extra_columns(self, params, c_logit, g) -> list:
        """Jacobian columns of parameters outside the atoms (the temperature), in ravel order."""
        return []

    # ---- estimation
    def jacobian(self, params, x: Float[Array, "d n"]) -> tuple[Float[Array, "n"], Float[Array, "n p"]]:
        n = x.shape[1]
        tau = self.temperature(params)
        g, dg = per_atom_jacobian(self.gate_router.fn, params.beta1, x)  # (k, n), leaves (k, n, ...)
        h, dh = per_atom_jacobian(self.expert.fn, params.eta, x)
        w = self.gates((g + params.beta0[:, None]) / tau)
        f = jnp.sum(w * h, axis=0)
        c_logit = self.logit_coefficient(w, h, f) / tau  # df / d(g_i + beta0_i)
        blocks = [c_logit.T]  # beta0
        blocks += jacobian_columns(scale_leaves(c_logit, dg), n)  # beta1 (router parameters)
        blocks += jacobian_columns(scale_leaves(w, dh), n)  # eta
        return f, jnp.concatenate(blocks + self.extra_columns(params, c_logit, g), axis=1)

    def split_atoms(self, key, truth, k_star: int, noise, offset: int):
        """(beta0, beta1, eta) of the near-truth split (`split_level` with the family's temperature)."""
        assign = split_assignment(k_star, self.k, offset)
        return split_level(key, truth.beta0, truth.beta1, truth.eta, assign, self.temperature(truth), noise, axis=0)

    def near_truth_split(self, key, truth, k_star: int, noise=0.1, offset: int = 0):
        r"""True atom j is split into the fitted atoms of its cell (fitted atoms $0..k^*-1$ start at true atoms
        $0..k^*-1$, the extras go to true atoms `offset`, `offset`+1, ... cyclically); a cell of m atoms gets
        $\beta_{0i} = \beta^*_{0j} - \tau \log m$ (its mass is the true atom's), then every coordinate an
        independent $N(0, \text{noise}^2)$ perturbation, then the projection onto $\Theta$."""
        k_split, _ = jax.random.split(key)
        beta0, beta1, eta = self.split_atoms(k_split, truth, k_star, noise, offset)
        return self.project(type(truth)(beta0, beta1, eta))

    # ---- cells and losses (class level: parameters only)
    @classmethod
    def atom_vectors(cls, params) -> Float[Array, "k p"]:
        return jnp.concatenate([vc.flat(params.beta1, 1), vc.flat(params.eta, 1)], axis=-1)

    @classmethod
    def voronoi_cells(cls, fitted, truth, **options) -> vc.VoronoiCells:
        """Cells of (already normalised) `fitted` around `truth` on $\\omega = (\\beta_1, \\eta)$."""
        omega_star = cls.atom_vectors(truth)
        assign = vc.assign(cls.atom_vectors(fitted), omega_star)
        return vc.VoronoiCells(assign, vc.cell_sizes(assign, omega_star.shape[0]))

    @classmethod
    def expert_sup(cls, fn, fitted, truth, x):
        """(sup error, cell size) per true atom over the points x (already normalised `fitted`)."""
        return vc.sup_cells(fn, fitted.eta, jax.tree_util.tree_map(jnp.asarray, truth.eta),
                            cls.atom_vectors(fitted), cls.atom_vectors(truth), x)

    @classmethod
    def parameter_errors(cls, fitted, truth, **options) -> vc.ParameterErrors:
        r"""Cell errors with weights $e^{\beta_0}$ on gate blocks $\beta_1$ and expert blocks $\eta$ (no temperature)."""
        return vc.cell_errors(jnp.exp(jnp.asarray(fitted.beta0)), jnp.exp(jnp.asarray(truth.beta0)),
                              jnp.asarray(fitted.beta1), jnp.asarray(truth.beta1),
                              vc.flat(fitted.eta, 1), vc.flat(truth.eta, 1), jnp.nan)

    @classmethod
    def input_dim(cls, params) -> int | None:
        """d as the gate parameters show it (None where they do not: a non-linear router's pytree)."""
        return jnp.shape(params.beta1)[-1]

    # ---- configs: a family with keys of its own (a router, groups) overrides these
    def config_entries(self) -> dict:
        """This model's own [model] config keys and values (beyond family, expert, d, k*, k_fit, box)."""
        return {}

    @classmethod
    def read_config(cls, table: dict) -> dict:
        """Validate and normalise this family's own keys of a [model] table."""
        return {}

    @classmethod
    def from_config(cls, expert, k_star: int, d: int, box, entries: dict):
        """The true model of a config: k* atoms."""
        return cls(expert, k_star, d, box)

    def error_metrics(self, errors, k_star: int) -> dict:
        """The per-fit parameter errors a sweep stores, by metric name."""
        metrics = {"exact_error": errors.exact_error}
        if self.components > k_star:  # unweighted (kept, labelled), mass-weighted, and the lightest atom's mass
            metrics.update(overfit_error=errors.overfit_error, overfit_error_weighted=errors.overfit_error_weighted,
                           cell_mass=errors.overfit_min_mass)
        return metrics
