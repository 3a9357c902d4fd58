r"""Per-parameter errors split by Voronoi cell type, expert sup errors, and the regression $L^2(\mu)$ error.

Theorems 1, 4, 5 predict two rates for the *parameters*: atoms in exactly-fitted cells ($|A_j| = 1$) at
$n^{-1/2}$, atoms in over-fitted cells ($|A_j| > 1$) at $n^{-1/4}$; the experts $h(\cdot, \eta)$ inherit them.
These functions report the two groups separately so each rate can be read off on its own. Cells and the
translation of the estimate follow `jaxmoe.losses.voronoi` (cells on $\omega = (\beta_1, \eta)$, ties to the
lowest true index; the estimate normalised to the truth's total mass and softmax-weighted mean slope).

Empty cells ($|A_j| = 0$: no fitted atom near true atom j, a failed fit) get NaN parameter errors, a mass
error $e^{\beta^*_{0j}}$, and are counted in `num_empty_cells`; the aggregates `exact_error` /
`overfit_error` are NaN when there is no cell of that type. All functions are jit- and vmap-able in the
fitted parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jaxmoe.validation import require, require_positive_int
from jaxmoe.data import TruncatedNormalInputs, UniformInputs
from jaxmoe.families import family_of
from jaxmoe.families.cells import ExpertSupErrors, ParameterErrors, check_translation, masked_max
from jaxmoe.families.hierarchical import HierarchicalParameterErrors

__all__ = [
    "ParameterErrors", "HierarchicalParameterErrors", "ExpertSupErrors", "parameter_errors", "expert_grid",
    "expert_sup_errors", "regression_l2_error", "quadrature_rule", "regression_l2_error_quadrature",
]


def parameter_errors(fitted: Any, truth: Any, *, translation: str = "normalize", linear_router: bool | None = None):
    r"""Per-parameter errors split by cell type (`ParameterErrors`, or `HierarchicalParameterErrors`).

    `fitted`, `truth`: parameters of the same family. For dense-to-sparse parameters `linear_router` must be
    given: True translates $(\beta_1, \beta_0)$, False only $\beta_0$ (a non-linear router); a model's own
    options are `model.loss_options`. Vmap over fits with `in_axes=(0, None)`."""
    family = family_of(truth)
    family.check_pair(fitted, truth)
    check_translation(translation)
    options = family.required_options({"linear_router": linear_router})
    if translation == "normalize":
        fitted = family.normalize_translation(fitted, truth, **options)
    return family.parameter_errors(fitted, truth, **options)


# ----------------------------------------------------------------------------------------------
# expert sup errors


def expert_grid(inputs: Any, d: int, num_points: int, key: PRNGKeyArray | None = None) -> Float[Array, "d n"]:
    r"""Points where the sup over x is taken: for d = 1 the uniform grid of `num_points` on the input box
    [low, high] (ends included; the sup of a Lipschitz difference is then exact to $O(L/\text{num\_points})$);
    for d > 1 `num_points` draws from `inputs` (needs `key`): a Monte Carlo lower bound of the sup."""
    require(isinstance(inputs, (UniformInputs, TruncatedNormalInputs)), "inputs", inputs,
            "must be UniformInputs or TruncatedNormalInputs")
    num_points = require_positive_int("num_points", num_points, 2)
    if d == 1:
        return jnp.linspace(inputs.low, inputs.high, num_points)[None, :]
    require(key is not None, "key", key, "a PRNG key is needed for d > 1 (random points)")
    return inputs.sample(key, d, num_points)


def expert_sup_errors(model: Any, fitted: Any, truth: Any, *, inputs: Any = UniformInputs(), num_points: int = 1001,
                      key: PRNGKeyArray | None = None, translation: str = "normalize") -> ExpertSupErrors:
    r"""Expert errors $\max_{i \in A_j} \sup_x |h(x, \eta_i) - h(x, \eta^*_j)|$ per true atom, split by cell type.

    `model`: any model of the family (its `expert`, `d` and `loss_options` are used).
    The sup is over `expert_grid(inputs, model.d, num_points, key)`."""
    family = family_of(truth)
    family.check_pair(fitted, truth)
    check_translation(translation)
    x = expert_grid(inputs, model.d, num_points, key)
    dim = family.input_dim(truth)
    require(dim is None or dim == model.d, "model.d", model.d, f"must match the parameters' d = {dim}")
    if translation == "normalize":
        fitted = family.normalize_translation(fitted, truth, **model.loss_options)
    sup, size = family.expert_sup(model.expert.fn, fitted, truth, x)
    return ExpertSupErrors(sup, size, masked_max(sup, size == 1), masked_max(sup, size > 1))


# ----------------------------------------------------------------------------------------------
# regression error


def _check_models(model_hat, model_true):
    require(model_hat.d == model_true.d, "model_hat.d", model_hat.d, f"must equal model_true.d = {model_true.d}")


def regression_l2_error(key: PRNGKeyArray, model_hat: Any, params_hat: Any, model_true: Any, params_true: Any,
                        inputs: Any = UniformInputs(), num_points: int = 100_000) -> Float[Array, ""]:
    r"""Monte Carlo $\|f_{\hat G} - f_{G^*}\|_{L^2(\mu)} \approx \big(\frac1N \sum_{m=1}^N (f_{\hat G}(X_m) - f_{G^*}(X_m))^2\big)^{1/2}$,
    $X_m \sim \mu$ = `inputs` i.i.d., fresh (drawn from `key`, independent of any training data).

    The relative error of the squared norm is about $\sqrt{2/N}$ times (kurtosis factor), i.e. ~0.5% at the
    default N = 1e5. Vmap over fits (`params_hat` batched) keeps the same points for every fit."""
    _check_models(model_hat, model_true)
    num_points = require_positive_int("num_points", num_points)
    x = inputs.sample(key, model_true.d, num_points)
    diff = model_hat(params_hat, x) - model_true(params_true, x)
    return jnp.sqrt(jnp.mean(diff ** 2))


def quadrature_rule(inputs: Any = UniformInputs(), num_nodes: int = 512) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss-Legendre nodes on [low, high] and weights $w_m = \mu$-density$(x_m) \times$ (interval weight),
    summing to 1: $\int g\, d\mu \approx \sum_m w_m g(x_m)$ (d = 1; uniform or truncated normal $\mu$)."""
    require(isinstance(inputs, (UniformInputs, TruncatedNormalInputs)), "inputs", inputs,
            "quadrature needs UniformInputs or TruncatedNormalInputs")
    num_nodes = require_positive_int("num_nodes", num_nodes, 2)
    t, wt = np.polynomial.legendre.leggauss(num_nodes)
    lo, hi = float(inputs.low), float(inputs.high)
    x = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
    w = 0.5 * (hi - lo) * wt
    if isinstance(inputs, TruncatedNormalInputs):
        w = w * np.exp(-0.5 * (x / float(inputs.std)) ** 2)
    return x, w / np.sum(w)


def regression_l2_error_quadrature(model_hat: Any, params_hat: Any, model_true: Any, params_true: Any,
                                   inputs: Any = UniformInputs(), num_nodes: int = 512) -> Float[Array, ""]:
    r"""$\|f_{\hat G} - f_{G^*}\|_{L^2(\mu)}$ by Gauss-Legendre quadrature, d = 1 only.

    Accuracy: the integrand $(f_{\hat G} - f_{G^*})^2$ is analytic; with gate slopes up to $s$ (logits
    $s x$, $s = |\beta_1|/\tau$) its nearest complex singularity is at distance $\approx \pi/s$ from the
    interval (half-length 1), and the N-node rule's error decays like $(1 + \pi/s)^{-2N}$: below $10^{-13}$
    for $s \le 10$ and about $10^{-7}$ for $s = 100$ at the default N = 512 (float64; float32 arithmetic
    limits the squared norm to about 1e-7 relative). `tests/parameter_errors_test.py` checks it against Monte Carlo."""
    _check_models(model_hat, model_true)
    require(model_true.d == 1, "model_true.d", model_true.d, "quadrature is for d = 1 (use regression_l2_error)")
    x, w = quadrature_rule(inputs, num_nodes)
    dtype = jnp.result_type(float)
    xj = jnp.asarray(x, dtype=dtype)[None, :]
    diff = model_hat(params_hat, xj) - model_true(params_true, xj)
    return jnp.sqrt(jnp.sum(jnp.asarray(w, dtype=dtype) * diff ** 2))
