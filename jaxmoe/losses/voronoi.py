r"""Voronoi losses between a fitted mixing measure $\hat G$ (k atoms) and the truth $G^*$ ($k^*$ atoms).

THEORY.md §3-5: D1 (eq. 6), D2r (eq. 10), the dense-to-sparse losses (eq. 16 and D4, eq. 18/19) and the
hierarchical losses (eq. 25, 29). Every loss is a pure JAX function of `(fitted, truth)`: `jit`-able, and
`vmap`-able over a batch of fits with `jax.vmap(loss, in_axes=(0, None))` (or `batched_loss`).

## Conventions (the paper leaves these open)

**Voronoi cells.** $A_j = \{i : \|\omega_i - \omega^*_j\| \le \|\omega_i - \omega^*_l\|\ \forall l\}$ with
$\omega_i = (\beta_{1i}, \eta_i)$ flattened into one vector (every router and expert leaf, dict keys in
sorted order; $\tau$ is not part of $\omega$). A tie puts atom i in the cell of the **lowest** true index j
(`argmin`), so the cells partition the fitted atoms. Cells are computed *after* the translation below.

**Translation.** Softmax gates are invariant to $(\beta_{1i}, \beta_{0i}) \to (\beta_{1i} + t_1, \beta_{0i} + t_0)$,
so $\hat G$ is identified only up to $(t_1, t_0)$, while the truth is normalised by (A.3). With
`translation="normalize"` (the default) every loss is evaluated at the unique translate of $\hat G$ with

- the same total gating mass as the truth, $\sum_i e^{\beta_{0i}/\tau} = \sum_j e^{\beta^*_{0j}/\tau^*}$, and
- the same softmax-weighted mean slope, $\sum_i p_i \beta_{1i} = \sum_j p^*_j \beta^*_{1j}$ with
  $p = \mathrm{softmax}(\beta_0/\tau)$, $p^* = \mathrm{softmax}(\beta^*_0/\tau^*)$ ($\tau = 1$ for softmax gating).

Both conditions are unchanged by translating $\hat G$, so the loss is **exactly** translation-invariant in
the estimate; both hold at $\hat G = G^*$ and at any over-fitted $\hat G$ that represents $G^*$ exactly
(atoms split with weights summing to the true weight), so the loss is 0 there. If $\hat G \to G^*$ up to a
translation, the normalising shift is of the order of the mass errors and of the *weighted first-order*
errors $\sum_{i \in A_j} e^{\beta_{0i}} \Delta\beta_{1ij}$, which the theory estimates at the parametric rate
$n^{-1/2}$, so the normalisation does not change the rates read from the loss. It is a normalisation, not the
infimum over $(t_1, t_0)$ (which is non-convex in $t_1$ because the cells move). `translation="none"` uses
$\hat G$ as given. For non-linear routers (`voronoi_loss_d4`) only the common shift of $\beta_0$ is a
symmetry, so only the mass condition is imposed. The hierarchical losses normalise level 1
$(\omega, \kappa)$ against the truth, then each fitted group's level-2 gate against the true group whose
level-1 cell it is in.

**Weights.** Softmax gating: $e^{\beta_{0i}}$. Dense-to-sparse (eq. 16, D4): $e^{\beta_{0i}/\tau}$ for the
estimate and $e^{\beta^*_{0j}/\tau^*}$ for the truth (each measure with its own temperature).

**Norms.** D1, D4 and D_H use $\|\Delta\eta\|$ of the whole flattened expert vector; the power-r losses
(D2r, eq. 16, eq. 29) take one norm per expert leaf, $\|\Delta a\|^r + |\Delta b|^r$ as in eq. (10).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmoe._errors import JaxMoEInputError, require
from jaxmoe.models.moe import DenseToSparseParams, HierarchicalParams, SoftmaxParams

TRANSLATIONS = ("normalize", "none")


# ----------------------------------------------------------------------------------------------
# validation


def check_translation(translation: str) -> str:
    require(translation in TRANSLATIONS, "translation", translation, f"must be one of {list(TRANSLATIONS)}")
    return translation


def check_r(r) -> float:
    """r must be a concrete (Python / NumPy) number >= 1; it is static under `jit`."""
    try:
        value = float(r)
    except Exception:  # traced or not a number
        raise JaxMoEInputError("r", r, "must be a concrete number >= 1 (pass it as a static argument under jit)")
    require(np.isfinite(value) and value >= 1, "r", r, "must be a finite number >= 1")
    return value


_LEADING = {
    SoftmaxParams: {"beta0": 1, "beta1": 1, "eta": 1},
    DenseToSparseParams: {"beta0": 1, "beta1": 1, "eta": 1, "tau": 0},
    HierarchicalParams: {"kappa": 1, "omega": 1, "beta0": 2, "beta1": 2, "eta": 2},
}


def check_pair(fitted: Any, truth: Any, family: type | tuple[type, ...] | None = None) -> type:
    """Raise `JaxMoEInputError` unless `fitted` and `truth` are parameters of the same family with the same
    per-atom shapes (same d, router and expert structure); the numbers of atoms may differ."""
    families = tuple(_LEADING) if family is None else (family if isinstance(family, tuple) else (family,))
    names = [c.__name__ for c in families]
    require(isinstance(truth, families), "truth", type(truth).__name__, f"must be one of {names}")
    cls = type(truth)
    require(isinstance(fitted, cls), "fitted", type(fitted).__name__, f"must be a {cls.__name__} like truth")
    for side, params in (("fitted", fitted), ("truth", truth)):
        leads = {}
        for name, lead in _LEADING[cls].items():
            for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(params, name))[0]:
                shape = tuple(np.shape(leaf))
                where = f"{side}.{name}{jax.tree_util.keystr(path)}.shape"
                require(len(shape) >= lead, where, shape, f"must have {lead} leading atom axes")
                if lead:
                    leads.setdefault(lead, (where, shape[:lead]))
                    first_where, first = leads[lead]
                    require(shape[:lead] == first[:lead], where, shape,
                            f"leading atom axes must match {first_where} {first}")
        if cls is HierarchicalParams:
            k1 = np.shape(params.kappa)[0]
            require(np.shape(params.beta0)[0] == k1, f"{side}.beta0.shape", np.shape(params.beta0),
                    f"must have k1 = {k1} groups like {side}.kappa")
    for name, lead in _LEADING[cls].items():
        f, t = getattr(fitted, name), getattr(truth, name)
        fs, ts = jax.tree_util.tree_structure(f), jax.tree_util.tree_structure(t)
        require(fs == ts, f"fitted.{name}", str(fs), f"must have truth.{name}'s structure {ts}")
        for (path, lf), lt in zip(jax.tree_util.tree_flatten_with_path(f)[0], jax.tree_util.tree_leaves(t)):
            sf, st = tuple(np.shape(lf)), tuple(np.shape(lt))
            require(sf[lead:] == st[lead:], f"fitted.{name}{jax.tree_util.keystr(path)}.shape", sf,
                    f"per-atom shape must equal truth's {st[lead:]} (same d / expert / router)")
    return cls


# ----------------------------------------------------------------------------------------------
# building blocks


def _flat(tree: Any, lead: int) -> Float[Array, "*lead p"]:
    """Concatenate every leaf of `tree`, each flattened after its `lead` atom axes."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    return jnp.concatenate([leaf.reshape(leaf.shape[:lead] + (-1,)) for leaf in leaves], axis=-1)


def _leaf_blocks(tree: Any, lead: int) -> list:
    return [jnp.asarray(leaf).reshape(jnp.shape(leaf)[:lead] + (-1,)) for leaf in jax.tree_util.tree_leaves(tree)]


def _pair_sq(a: Float[Array, "k p"], b: Float[Array, "m p"]) -> Float[Array, "k m"]:
    """Squared distances $\\|a_i - b_j\\|^2$ (by differences, not the expanded form, for accuracy)."""
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def _safe_sqrt(s: Array) -> Array:
    """sqrt with a zero (not NaN) gradient at 0, so the losses can be differentiated at the truth."""
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def _assign(omega: Float[Array, "k p"], omega_star: Float[Array, "m p"]) -> Int[Array, "k"]:
    """Voronoi assignment: the nearest true atom, ties to the lowest index."""
    return jnp.argmin(_pair_sq(omega, omega_star), axis=1)


def _normalize_gate(beta0, beta1, beta0_star, beta1_star, tau=1.0, tau_star=1.0):
    r"""Translate $(\beta_1, \beta_0)$ so that total mass and softmax-weighted mean slope match the truth.

    `beta1`, `beta1_star`: (k, p) / (k*, p) arrays, or None (only the $\beta_0$ shift is a symmetry)."""
    logw, logw_star = beta0 / tau, beta0_star / tau_star
    t0 = tau * (jax.scipy.special.logsumexp(logw_star) - jax.scipy.special.logsumexp(logw))
    if beta1 is None:
        return beta0 + t0, None
    p, p_star = jax.nn.softmax(logw), jax.nn.softmax(logw_star)
    t1 = p_star @ beta1_star - p @ beta1
    return beta0 + t0, beta1 + t1


def _cell_loss(w, w_star, omega, omega_star, blocks, blocks_star, kind: str, r: float = 1.0):
    r"""The generic Voronoi loss on flat atoms.

    `kind="d1"`: $\sum_j |\sum_{A_j} w_i - w^*_j| + \sum_{|A_j|=1} \sum_{A_j} w_i \sum_b \|\Delta_b\|
    + \sum_{|A_j|>1} \sum_{A_j} w_i \sum_b \|\Delta_b\|^2$; `kind="power"`: every cell with $\sum_b \|\Delta_b\|^r$.
    Returns (loss, assignment)."""
    assign = _assign(omega, omega_star)
    member = jax.nn.one_hot(assign, omega_star.shape[0], dtype=w.dtype)  # (k, k*)
    size = jnp.sum(member, axis=0)
    mass = jnp.sum(jnp.abs(member.T @ w - w_star))
    sq = [_pair_sq(b, bs) for b, bs in zip(blocks, blocks_star)]
    if kind == "d1":
        first = sum(_safe_sqrt(s) for s in sq)
        second = sum(sq)
        pair = jnp.where(size[None, :] == 1, first, second)
    else:
        pair = sum(_safe_sqrt(s) ** r for s in sq)
    return mass + jnp.sum(member * w[:, None] * pair), assign


# ----------------------------------------------------------------------------------------------
# normalisation (public: the estimate actually compared with the truth)


def normalize_translation(fitted: Any, truth: Any, *, linear_router: bool = True) -> Any:
    r"""The translate of `fitted` that the losses compare with `truth` (module docstring, "Translation").

    Softmax: $(\beta_1, \beta_0)$ shifted. Dense-to-sparse: the same with weights $e^{\beta_0/\tau}$ when
    `linear_router` (then `beta1` must be an array (k, d)); otherwise only $\beta_0$. Hierarchical: level 1
    $(\omega, \kappa)$, then each group's level 2 against the true group of its level-1 cell."""
    cls = check_pair(fitted, truth)
    if cls is SoftmaxParams:
        b0, b1 = _normalize_gate(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1),
                                 jnp.asarray(truth.beta0), jnp.asarray(truth.beta1))
        return fitted._replace(beta0=b0, beta1=b1)
    if cls is DenseToSparseParams:
        return _normalize_dts(fitted, truth, linear_router)
    return _normalize_hierarchical(fitted, truth)


def _normalize_dts(fitted: DenseToSparseParams, truth: DenseToSparseParams, linear: bool):
    tau, tau_star = jnp.asarray(fitted.tau), jnp.asarray(truth.tau)
    if linear:
        require(not isinstance(fitted.beta1, dict) and np.ndim(fitted.beta1) == 2, "fitted.beta1",
                type(fitted.beta1).__name__, "a linear router needs beta1 of shape (k, d)")
        b0, b1 = _normalize_gate(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1),
                                 jnp.asarray(truth.beta0), jnp.asarray(truth.beta1), tau, tau_star)
        return fitted._replace(beta0=b0, beta1=b1)
    b0, _ = _normalize_gate(jnp.asarray(fitted.beta0), None, jnp.asarray(truth.beta0), None, tau, tau_star)
    return fitted._replace(beta0=b0)


def _normalize_hierarchical(fitted: HierarchicalParams, truth: HierarchicalParams) -> HierarchicalParams:
    kappa, omega = _normalize_gate(jnp.asarray(fitted.kappa), jnp.asarray(fitted.omega),
                                   jnp.asarray(truth.kappa), jnp.asarray(truth.omega))
    group = _assign(omega, jnp.asarray(truth.omega))
    b0s, b1s = jnp.asarray(truth.beta0)[group], jnp.asarray(truth.beta1)[group]
    b0, b1 = jax.vmap(_normalize_gate)(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1), b0s, b1s)
    return fitted._replace(kappa=kappa, omega=omega, beta0=b0, beta1=b1)


def _prepare(fitted, truth, family, translation, linear_router=True):
    check_pair(fitted, truth, family)
    check_translation(translation)
    if translation == "normalize":
        if family is DenseToSparseParams:
            return _normalize_dts(fitted, truth, linear_router)
        return normalize_translation(fitted, truth)
    return fitted


# ----------------------------------------------------------------------------------------------
# Voronoi cells


class VoronoiCells(NamedTuple):
    """`assignment[i]` = the true atom j whose cell $A_j$ holds fitted atom i; `sizes[j]` = $|A_j|$."""

    assignment: Int[Array, "k"]
    sizes: Int[Array, "k_star"]


class HierarchicalCells(NamedTuple):
    """Level 1: `group_assignment[i1]` = $j_1$ with $i_1 \\in A_{j_1}$, `group_sizes[j1]` = $|A_{j_1}|$.
    Level 2: `assignment[i1, i2]` = $j_2$ with $i_2 \\in A_{j_2|j_1}$ (against true group `group_assignment[i1]`),
    `sizes[i1, j2]` = the size of that cell within fitted group i1."""

    group_assignment: Int[Array, "k1"]
    group_sizes: Int[Array, "k1_star"]
    assignment: Int[Array, "k1 k2"]
    sizes: Int[Array, "k1 k2_star"]


def _sizes(assign, m):
    return jnp.sum(jax.nn.one_hot(assign, m, dtype=jnp.int32), axis=0)


def voronoi_cells(fitted: Any, truth: Any, *, translation: str = "normalize", linear_router: bool = True):
    r"""Voronoi cells of `fitted` around `truth` on $\omega_i = (\beta_{1i}, \eta_i)$ (ties: lowest j).

    Returns `VoronoiCells` (softmax, dense-to-sparse) or `HierarchicalCells`. `linear_router` matters only
    for dense-to-sparse parameters (whether $\beta_1$ is translated)."""
    cls = check_pair(fitted, truth)
    check_translation(translation)
    if translation == "normalize":
        fitted = _normalize_dts(fitted, truth, linear_router) if cls is DenseToSparseParams \
            else normalize_translation(fitted, truth)
    if cls is HierarchicalParams:
        group = _assign(jnp.asarray(fitted.omega), jnp.asarray(truth.omega))
        k2s = np.shape(truth.beta0)[1]
        omega2 = jnp.concatenate([jnp.asarray(fitted.beta1), _flat(fitted.eta, 2)], axis=-1)
        omega2_star = jnp.concatenate([jnp.asarray(truth.beta1), _flat(truth.eta, 2)], axis=-1)[group]
        assign = jax.vmap(_assign)(omega2, omega2_star)
        return HierarchicalCells(group, _sizes(group, np.shape(truth.kappa)[0]), assign,
                                 jax.vmap(lambda a: _sizes(a, k2s))(assign))
    omega = jnp.concatenate([_flat(fitted.beta1, 1), _flat(fitted.eta, 1)], axis=-1)
    omega_star = jnp.concatenate([_flat(truth.beta1, 1), _flat(truth.eta, 1)], axis=-1)
    assign = _assign(omega, omega_star)
    return VoronoiCells(assign, _sizes(assign, omega_star.shape[0]))


# ----------------------------------------------------------------------------------------------
# softmax gating: D1 (eq. 6) and D2r (eq. 10)


def _softmax_parts(params: SoftmaxParams):
    gate = jnp.asarray(params.beta1)
    return jnp.exp(jnp.asarray(params.beta0)), gate, jnp.concatenate([gate, _flat(params.eta, 1)], axis=-1)


def voronoi_loss_d1(fitted: SoftmaxParams, truth: SoftmaxParams, *, translation: str = "normalize") -> Float[Array, ""]:
    r"""D1 (eq. 6), for strongly identifiable experts (Theorem 1: $D_1(\hat G_n, G^*) = O_P(\sqrt{\log n / n})$).

    $$D_1 = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\Big|
      + \sum_{|A_j|=1} \sum_{i \in A_j} e^{\beta_{0i}} (\|\Delta\beta_{1ij}\| + \|\Delta\eta_{ij}\|)
      + \sum_{|A_j|>1} \sum_{i \in A_j} e^{\beta_{0i}} (\|\Delta\beta_{1ij}\|^2 + \|\Delta\eta_{ij}\|^2)$$

    Translation-invariant in `fitted` (module docstring); vmap over fits with `in_axes=(0, None)`."""
    fitted = _prepare(fitted, truth, SoftmaxParams, translation)
    w, gate, omega = _softmax_parts(fitted)
    ws, gs, os_ = _softmax_parts(truth)
    eta, eta_s = _flat(fitted.eta, 1), _flat(truth.eta, 1)
    return _cell_loss(w, ws, omega, os_, [gate, eta], [gs, eta_s], "d1")[0]


def voronoi_loss_d2r(fitted: SoftmaxParams, truth: SoftmaxParams, r: float = 1.0, *,
                     translation: str = "normalize") -> Float[Array, ""]:
    r"""D2r (eq. 10), any $r \ge 1$, for linear experts (Theorem 2: minimax rate no faster than $n^{-1/(2r)}$).

    $$D_{2,r} = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\Big|
      + \sum_j \sum_{i \in A_j} e^{\beta_{0i}} \big(\|\Delta\beta_{1ij}\|^r + \sum_{\text{leaves } l} \|\Delta\eta^{(l)}_{ij}\|^r\big)$$

    (for the linear expert the leaves are a and b: $\|\Delta a\|^r + |\Delta b|^r$). `r` is static under jit."""
    r = check_r(r)
    fitted = _prepare(fitted, truth, SoftmaxParams, translation)
    w, gate, omega = _softmax_parts(fitted)
    ws, gs, os_ = _softmax_parts(truth)
    return _cell_loss(w, ws, omega, os_, [gate] + _leaf_blocks(fitted.eta, 1),
                      [gs] + _leaf_blocks(truth.eta, 1), "power", r)[0]


# ----------------------------------------------------------------------------------------------
# dense-to-sparse gating: eq. (16) and D4 (eq. 18/19)


def _dts_parts(params: DenseToSparseParams):
    tau = jnp.asarray(params.tau)
    gate = _flat(params.beta1, 1)
    w = jnp.exp(jnp.asarray(params.beta0) / tau)
    return w, gate, jnp.concatenate([gate, _flat(params.eta, 1)], axis=-1), tau


def voronoi_loss_temperature(fitted: DenseToSparseParams, truth: DenseToSparseParams, r: float = 1.0, *,
                             translation: str = "normalize") -> Float[Array, ""]:
    r"""The dense-to-sparse loss with a **linear** router (eq. 16; Theorem 3: minimax rate no faster than
    $n^{-1/(2r)}$ for every r).

    $$D_{3,r} = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}/\tau} - e^{\beta^*_{0j}/\tau^*}\Big|
      + \sum_j \sum_{i \in A_j} e^{\beta_{0i}/\tau} \big(\|\Delta\beta_{1ij}\|^r + \sum_l \|\Delta\eta^{(l)}_{ij}\|^r\big)
      + |\tau - \tau^*|^r$$

    Convention: the temperature term is added once (one temperature per measure), not per atom.
    Translation: $(\beta_1, \beta_0) + (t_1, t_0)$, normalised with weights $e^{\beta_0/\tau}$."""
    r = check_r(r)
    fitted = _prepare(fitted, truth, DenseToSparseParams, translation, linear_router=True)
    w, gate, omega, tau = _dts_parts(fitted)
    ws, gs, os_, tau_s = _dts_parts(truth)
    loss, _ = _cell_loss(w, ws, omega, os_, [gate] + _leaf_blocks(fitted.eta, 1),
                         [gs] + _leaf_blocks(truth.eta, 1), "power", r)
    return loss + jnp.abs(tau - tau_s) ** r


def voronoi_loss_d4(fitted: DenseToSparseParams, truth: DenseToSparseParams, *,
                    translation: str = "normalize") -> Float[Array, ""]:
    r"""D4 (eq. 18/19), dense-to-sparse gating with a **non-linear** router $g(x, \beta_1)$ (Theorem 4:
    $D_4 = O_P(\sqrt{\log n/n})$ under algebraic independence).

    $$D_4 = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}/\tau} - e^{\beta^*_{0j}/\tau^*}\Big|
      + \sum_{|A_j|=1} \sum_{i \in A_j} e^{\beta_{0i}/\tau} (\|\Delta\beta_{1ij}\| + \|\Delta\eta_{ij}\| + |\Delta\tau|)
      + \sum_{|A_j|>1} \sum_{i \in A_j} e^{\beta_{0i}/\tau} (\|\Delta\beta_{1ij}\|^2 + \|\Delta\eta_{ij}\|^2 + |\Delta\tau|^2)$$

    $\beta_1$ is the router's parameter pytree (flattened). Translation: only the common shift of $\beta_0$
    (the router is not linear in $\beta_1$)."""
    fitted = _prepare(fitted, truth, DenseToSparseParams, translation, linear_router=False)
    w, gate, omega, tau = _dts_parts(fitted)
    ws, gs, os_, tau_s = _dts_parts(truth)
    eta, eta_s = _flat(fitted.eta, 1), _flat(truth.eta, 1)
    tau_b = jnp.broadcast_to(tau, (w.shape[0], 1))
    tau_bs = jnp.broadcast_to(tau_s, (ws.shape[0], 1))
    return _cell_loss(w, ws, omega, os_, [gate, eta, tau_b], [gs, eta_s, tau_bs], "d1")[0]


# ----------------------------------------------------------------------------------------------
# hierarchical: eq. (25) and (29)


def voronoi_loss_hierarchical(fitted: HierarchicalParams, truth: HierarchicalParams, r: float | None = None, *,
                              translation: str = "normalize") -> Float[Array, ""]:
    r"""The two-level loss: $D_H$ (eq. 25) when `r is None`, its power-r version (eq. 29) otherwise.

    $$D_H = \sum_{j_1} \Big|\sum_{i_1 \in A_{j_1}} e^{\kappa_{i_1}} - e^{\kappa^*_{j_1}}\Big|
      + \sum_{j_1} \sum_{i_1 \in A_{j_1}} e^{\kappa_{i_1}} \big[\|\Delta\omega_{i_1 j_1}\| + D_1^{(i_1)}\big]$$

    where $D_1^{(i_1)}$ is D1 (eq. 6) between fitted group $i_1$'s level-2 measure
    $\sum_{i_2} e^{\beta_{0 i_2|i_1}} \delta_{(\beta_{1 i_2|i_1}, \eta_{i_1 i_2})}$ and true group $j_1$'s, with
    cells $A_{j_2|j_1}$ within the group. Level-1 cells use $\omega$ only (Theorem 5: $O_P(\sqrt{\log n/n})$).

    Eq. (29) (`r >= 1`, linear experts, Theorem 6): every parameter difference to the power r,
    $\|\Delta\omega\|^r$ and $D_{2,r}^{(i_1)}$ (eq. 10) inside; the mass terms stay absolute values, as in
    eq. (10). Translation: level 1 and each group's level 2 (module docstring)."""
    kind = "d1" if r is None else "power"
    r = 1.0 if r is None else check_r(r)
    fitted = _prepare(fitted, truth, HierarchicalParams, translation)
    kappa, omega = jnp.asarray(fitted.kappa), jnp.asarray(fitted.omega)
    kappa_s, omega_s = jnp.asarray(truth.kappa), jnp.asarray(truth.omega)
    group = _assign(omega, omega_s)
    member = jax.nn.one_hot(group, omega_s.shape[0], dtype=kappa.dtype)
    w, ws = jnp.exp(kappa), jnp.exp(kappa_s)
    mass = jnp.sum(jnp.abs(member.T @ w - ws))
    d_omega = _safe_sqrt(jnp.sum((omega - omega_s[group]) ** 2, axis=-1))
    d_omega = d_omega if kind == "d1" else d_omega ** r

    if kind == "d1":
        eta_f, eta_t = [_flat(fitted.eta, 2)], [_flat(truth.eta, 2)]
    else:
        eta_f, eta_t = _leaf_blocks(fitted.eta, 2), _leaf_blocks(truth.eta, 2)
    eta_t = [e[group] for e in eta_t]
    b0_t, b1_t = jnp.asarray(truth.beta0)[group], jnp.asarray(truth.beta1)[group]

    def inner(b0, b1, etas, b0s, b1s, etas_s):
        om = jnp.concatenate([b1] + list(etas), axis=-1)
        om_s = jnp.concatenate([b1s] + list(etas_s), axis=-1)
        return _cell_loss(jnp.exp(b0), jnp.exp(b0s), om, om_s, [b1] + list(etas), [b1s] + list(etas_s), kind, r)[0]

    inner_losses = jax.vmap(inner)(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1), eta_f, b0_t, b1_t, eta_t)
    return mass + jnp.sum(w * (d_omega + inner_losses))


# ----------------------------------------------------------------------------------------------
# batches


LOSSES: dict[str, Callable] = {
    "d1": voronoi_loss_d1,
    "d2r": voronoi_loss_d2r,
    "temperature": voronoi_loss_temperature,
    "d4": voronoi_loss_d4,
    "hierarchical": voronoi_loss_hierarchical,
}


def batched_loss(loss: Callable | str, fitted_batch: Any, truth: Any, **kwargs) -> Float[Array, "batch"]:
    """`loss` (a function above or its key in `LOSSES`) on every fit of `fitted_batch` (leading batch axis on
    every leaf) against one `truth`: `jax.vmap(loss, in_axes=(0, None))`, jitted with `kwargs` static."""
    if isinstance(loss, str):
        require(loss in LOSSES, "loss", loss, f"must be one of {sorted(LOSSES)} or a loss function")
        loss = LOSSES[loss]
    return _batched(loss, tuple(sorted(kwargs.items())))(fitted_batch, truth)


_BATCHED_CACHE: dict = {}


def _batched(loss, kw):
    key = (loss, kw)
    if key not in _BATCHED_CACHE:
        _BATCHED_CACHE[key] = jax.jit(jax.vmap(lambda f, t: loss(f, t, **dict(kw)), in_axes=(0, None)))
    return _BATCHED_CACHE[key]
