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

from jaxmoe._errors import require, require_positive_int
from jaxmoe.data import TruncatedNormalInputs, UniformInputs
from jaxmoe.losses.voronoi import (
    _assign,
    _flat,
    _normalize_dts,
    _normalize_hierarchical,
    _pair_sq,
    _safe_sqrt,
    check_pair,
    check_translation,
    normalize_translation,
)
from jaxmoe.models.moe import DenseToSparseParams, HierarchicalParams, SoftmaxParams


class ParameterErrors(NamedTuple):
    r"""Errors per true atom j (arrays of length $k^*$) and their aggregates by cell type.

    - `cell_size[j]` $= |A_j|$;
    - `mass_error[j]` $= |\sum_{i \in A_j} w_i - w^*_j|$ with $w = e^{\beta_0}$ ($e^{\beta_0/\tau}$ for dense-to-sparse);
    - `gate_error[j]` $= \max_{i \in A_j} \|\Delta\beta_{1ij}\|$, `expert_error[j]` $= \max_{i \in A_j} \|\Delta\eta_{ij}\|$;
    - `atom_error[j]` = max of the two (the cell's largest parameter-block error);
    - `exact_error` $= \max_{|A_j| = 1} \max(\text{atom\_error}_j, \text{mass\_error}_j)$ (expected $\sim n^{-1/2}$);
    - `overfit_error` $= \max_{|A_j| > 1} \text{atom\_error}_j$ (expected $\sim n^{-1/4}$; the merged mass of
      an over-fitted cell converges at $n^{-1/2}$ and is in `mass_error`, not here);
    - `tau_error` $= |\tau - \tau^*|$ (dense-to-sparse; NaN otherwise);
    - `num_empty_cells`: cells with no fitted atom.
    """

    cell_size: Int[Array, "k_star"]
    mass_error: Float[Array, "k_star"]
    gate_error: Float[Array, "k_star"]
    expert_error: Float[Array, "k_star"]
    atom_error: Float[Array, "k_star"]
    exact_error: Float[Array, ""]
    overfit_error: Float[Array, ""]
    tau_error: Float[Array, ""]
    num_empty_cells: Int[Array, ""]


class HierarchicalParameterErrors(NamedTuple):
    r"""`level1`: `ParameterErrors` of the groups (gate $(\kappa, \omega)$; `expert_error` NaN, so
    `atom_error` = `gate_error` $= \|\Delta\omega\|$). `level2`: `ParameterErrors` with a leading axis $k_1$,
    fitted group $i_1$ against the true group of its level-1 cell. `exact_error` / `overfit_error`: the
    aggregates over every level-2 cell of every group (NaN when there is none of that type)."""

    level1: ParameterErrors
    level2: ParameterErrors
    exact_error: Float[Array, ""]
    overfit_error: Float[Array, ""]


def _masked_max(values, mask, axis=None):
    """max over `mask`, NaN where the mask is empty."""
    got = jnp.max(jnp.where(mask, values, -jnp.inf), axis=axis)
    return jnp.where(jnp.isfinite(got), got, jnp.nan)


def _errors(w, ws, gate, gs, eta, es, tau_error):
    """`ParameterErrors` for flat atoms; `eta`/`es` may be None (no expert block)."""
    omega = gate if eta is None else jnp.concatenate([gate, eta], axis=-1)
    omega_s = gs if es is None else jnp.concatenate([gs, es], axis=-1)
    assign = _assign(omega, omega_s)
    member = jax.nn.one_hot(assign, omega_s.shape[0], dtype=bool)  # (k, k*)
    size = jnp.sum(member, axis=0, dtype=jnp.int32)
    mass = jnp.abs(member.T.astype(w.dtype) @ w - ws)
    gate_err = _masked_max(_safe_sqrt(_pair_sq(gate, gs)), member, axis=0)
    if eta is None:
        expert_err = jnp.full_like(gate_err, jnp.nan)
        atom = gate_err
    else:
        expert_err = _masked_max(_safe_sqrt(_pair_sq(eta, es)), member, axis=0)
        atom = jnp.maximum(gate_err, expert_err)
    exact = _masked_max(jnp.maximum(atom, mass), size == 1)
    over = _masked_max(atom, size > 1)
    return ParameterErrors(size, mass, gate_err, expert_err, atom, exact, over,
                           jnp.asarray(tau_error, dtype=w.dtype), jnp.sum(size == 0, dtype=jnp.int32))


def parameter_errors(fitted: Any, truth: Any, *, translation: str = "normalize", linear_router: bool | None = None):
    r"""Per-parameter errors split by cell type (`ParameterErrors`, or `HierarchicalParameterErrors`).

    `fitted`, `truth`: parameters of the same family (softmax, dense-to-sparse, hierarchical).
    For dense-to-sparse parameters `linear_router` must be given: True translates $(\beta_1, \beta_0)$,
    False only $\beta_0$ (a non-linear router). Vmap over fits with `in_axes=(0, None)`."""
    cls = check_pair(fitted, truth)
    check_translation(translation)
    norm = translation == "normalize"
    if cls is SoftmaxParams:
        if norm:
            fitted = normalize_translation(fitted, truth)
        return _errors(jnp.exp(jnp.asarray(fitted.beta0)), jnp.exp(jnp.asarray(truth.beta0)),
                       jnp.asarray(fitted.beta1), jnp.asarray(truth.beta1),
                       _flat(fitted.eta, 1), _flat(truth.eta, 1), jnp.nan)
    if cls is DenseToSparseParams:
        require(linear_router in (True, False), "linear_router", linear_router,
                "must be True or False for dense-to-sparse parameters (is the router linear in beta1?)")
        if norm:
            fitted = _normalize_dts(fitted, truth, linear_router)
        tau, tau_s = jnp.asarray(fitted.tau), jnp.asarray(truth.tau)
        return _errors(jnp.exp(jnp.asarray(fitted.beta0) / tau), jnp.exp(jnp.asarray(truth.beta0) / tau_s),
                       _flat(fitted.beta1, 1), _flat(truth.beta1, 1),
                       _flat(fitted.eta, 1), _flat(truth.eta, 1), jnp.abs(tau - tau_s))
    if norm:
        fitted = _normalize_hierarchical(fitted, truth)
    kappa = jnp.asarray(fitted.kappa)
    level1 = _errors(jnp.exp(kappa), jnp.exp(jnp.asarray(truth.kappa)), jnp.asarray(fitted.omega),
                     jnp.asarray(truth.omega), None, None, jnp.nan)
    group = _assign(jnp.asarray(fitted.omega), jnp.asarray(truth.omega))
    eta_s = _flat(truth.eta, 2)[group]
    b0_s, b1_s = jnp.asarray(truth.beta0)[group], jnp.asarray(truth.beta1)[group]
    level2 = jax.vmap(lambda b0, b1, e, b0s, b1s, es: _errors(jnp.exp(b0), jnp.exp(b0s), b1, b1s, e, es, jnp.nan))(
        jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1), _flat(fitted.eta, 2), b0_s, b1_s, eta_s)
    exact = _masked_max(jnp.maximum(level2.atom_error, level2.mass_error), level2.cell_size == 1)
    over = _masked_max(level2.atom_error, level2.cell_size > 1)
    return HierarchicalParameterErrors(level1, level2, exact, over)


# ----------------------------------------------------------------------------------------------
# expert sup errors


class ExpertSupErrors(NamedTuple):
    r"""`sup_error[j]` $= \max_{i \in A_j} \sup_x |h(x, \eta_i) - h(x, \eta^*_j)|$ (NaN for an empty cell),
    `cell_size[j]` $= |A_j|$; `exact_error` / `overfit_error`: max over cells with $|A_j| = 1$ / $> 1$ (NaN if
    none). Hierarchical: arrays of shape $(k_1, k_2^*)$, fitted group $i_1$ against its level-1 cell's true group."""

    sup_error: Float[Array, "*groups k_star"]
    cell_size: Int[Array, "*groups k_star"]
    exact_error: Float[Array, ""]
    overfit_error: Float[Array, ""]


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


def _expert_values(fn, eta, x):
    over_x = jax.vmap(fn, in_axes=(1, None))
    return jax.vmap(over_x, in_axes=(None, 0))(x, eta)  # (k, n)


def _sup_cells(fn, eta, eta_s, omega, omega_s, x):
    assign = _assign(omega, omega_s)
    member = jax.nn.one_hot(assign, omega_s.shape[0], dtype=bool)
    h, hs = _expert_values(fn, eta, x), _expert_values(fn, eta_s, x)
    sup = jnp.max(jnp.abs(h[:, None, :] - hs[None, :, :]), axis=-1)  # (k, k*)
    return _masked_max(sup, member, axis=0), jnp.sum(member, axis=0, dtype=jnp.int32)


def expert_sup_errors(model: Any, fitted: Any, truth: Any, *, inputs: Any = UniformInputs(), num_points: int = 1001,
                      key: PRNGKeyArray | None = None, translation: str = "normalize") -> ExpertSupErrors:
    r"""Expert errors $\max_{i \in A_j} \sup_x |h(x, \eta_i) - h(x, \eta^*_j)|$ per true atom, split by cell type.

    `model`: any model of the family (its `expert`, `d` and, for dense-to-sparse, `router.is_linear` are used).
    The sup is over `expert_grid(inputs, model.d, num_points, key)`."""
    cls = check_pair(fitted, truth)
    check_translation(translation)
    x = expert_grid(inputs, model.d, num_points, key)
    require(np.shape(truth.beta1)[-1] == model.d or cls is DenseToSparseParams, "model.d", model.d,
            f"must match the parameters' d = {np.shape(truth.beta1)[-1]}")
    fn = model.expert.fn
    if translation == "normalize":
        if cls is DenseToSparseParams:
            fitted = _normalize_dts(fitted, truth, bool(model.router.is_linear))
        else:
            fitted = normalize_translation(fitted, truth)
    if cls is HierarchicalParams:
        group = _assign(jnp.asarray(fitted.omega), jnp.asarray(truth.omega))
        eta_s = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[group], truth.eta)
        omega = jnp.concatenate([jnp.asarray(fitted.beta1), _flat(fitted.eta, 2)], axis=-1)
        omega_s = jnp.concatenate([jnp.asarray(truth.beta1), _flat(truth.eta, 2)], axis=-1)[group]
        sup, size = jax.vmap(lambda e, es, o, os_: _sup_cells(fn, e, es, o, os_, x))(fitted.eta, eta_s, omega, omega_s)
    else:
        omega = jnp.concatenate([_flat(fitted.beta1, 1), _flat(fitted.eta, 1)], axis=-1)
        omega_s = jnp.concatenate([_flat(truth.beta1, 1), _flat(truth.eta, 1)], axis=-1)
        sup, size = _sup_cells(fn, fitted.eta, jax.tree_util.tree_map(jnp.asarray, truth.eta), omega, omega_s, x)
    return ExpertSupErrors(sup, size, _masked_max(sup, size == 1), _masked_max(sup, size > 1))


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
