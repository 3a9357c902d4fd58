r"""Voronoi-cell geometry shared by every family: assignment, gate normalisation, cell losses, cell errors.

These are the family-independent pieces of THEORY.md §3-5; each family module (`softmax`, `dense_to_sparse`,
`hierarchical`, `sigmoid`) says which atoms, weights and blocks it feeds them. All are pure JAX functions of
arrays, `jit`- and `vmap`-able.

- **Cells.** $A_j = \{i : \|\omega_i - \omega^*_j\| \le \|\omega_i - \omega^*_l\|\ \forall l\}$ on flat atom
  vectors $\omega_i$; a tie goes to the **lowest** true index j (`argmin`), so the cells partition the fitted atoms.
- **Gate normalisation** (`normalize_gate`): the translate of $(\beta_1, \beta_0)$ with the truth's total mass
  $\sum_i e^{\beta_{0i}/\tau}$ and softmax-weighted mean slope (`jaxmoe.losses.voronoi` states why).
- **Cell loss** (`cell_loss`): the D1-type loss (first powers in exactly fitted cells, squares in over-fitted
  ones) or the power-r loss, from weights, atoms and per-block differences.
- **Cell errors** (`cell_errors`): per true atom, the mass error and the largest gate / expert error in its cell.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmoe.validation import JaxMoEInputError, require

__all__ = [
    "TRANSLATIONS", "VoronoiCells", "ParameterErrors", "ExpertSupErrors", "check_translation", "check_r",
    "flat", "leaf_blocks", "pair_sq", "safe_sqrt", "assign", "normalize_gate", "cell_loss", "cell_sizes",
    "masked_max", "cell_errors", "expert_values", "sup_cells",
]

TRANSLATIONS = ("normalize", "none")


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


def flat(tree: Any, lead: int) -> Float[Array, "*lead p"]:
    """Concatenate every leaf of `tree`, each flattened after its `lead` atom axes."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    return jnp.concatenate([leaf.reshape(leaf.shape[:lead] + (-1,)) for leaf in leaves], axis=-1)


def leaf_blocks(tree: Any, lead: int) -> list:
    return [jnp.asarray(leaf).reshape(jnp.shape(leaf)[:lead] + (-1,)) for leaf in jax.tree_util.tree_leaves(tree)]


def pair_sq(a: Float[Array, "k p"], b: Float[Array, "m p"]) -> Float[Array, "k m"]:
    """Squared distances $\\|a_i - b_j\\|^2$ (by differences, not the expanded form, for accuracy)."""
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def safe_sqrt(s: Array) -> Array:
    """sqrt with a zero (not NaN) gradient at 0, so the losses can be differentiated at the truth."""
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def assign(omega: Float[Array, "k p"], omega_star: Float[Array, "m p"]) -> Int[Array, "k"]:
    """Voronoi assignment: the nearest true atom, ties to the lowest index."""
    return jnp.argmin(pair_sq(omega, omega_star), axis=1)


def normalize_gate(beta0, beta1, beta0_star, beta1_star, tau=1.0, tau_star=1.0):
    r"""Translate $(\beta_1, \beta_0)$ so that total mass and softmax-weighted mean slope match the truth.

    `beta1`, `beta1_star`: (k, p) / (k*, p) arrays, or None (only the $\beta_0$ shift is a symmetry)."""
    logw, logw_star = beta0 / tau, beta0_star / tau_star
    t0 = tau * (jax.scipy.special.logsumexp(logw_star) - jax.scipy.special.logsumexp(logw))
    if beta1 is None:
        return beta0 + t0, None
    p, p_star = jax.nn.softmax(logw), jax.nn.softmax(logw_star)
    t1 = p_star @ beta1_star - p @ beta1
    return beta0 + t0, beta1 + t1


def cell_loss(w, w_star, omega, omega_star, blocks, blocks_star, kind: str, r: float = 1.0):
    r"""The generic Voronoi loss on flat atoms.

    `kind="d1"`: $\sum_j |\sum_{A_j} w_i - w^*_j| + \sum_{|A_j|=1} \sum_{A_j} w_i \sum_b \|\Delta_b\|
    + \sum_{|A_j|>1} \sum_{A_j} w_i \sum_b \|\Delta_b\|^2$; `kind="power"`: every cell with $\sum_b \|\Delta_b\|^r$.
    Returns (loss, assignment)."""
    cell_of = assign(omega, omega_star)
    member = jax.nn.one_hot(cell_of, omega_star.shape[0], dtype=w.dtype)  # (k, k*)
    size = jnp.sum(member, axis=0)
    mass = jnp.sum(jnp.abs(member.T @ w - w_star))
    sq = [pair_sq(b, bs) for b, bs in zip(blocks, blocks_star)]
    if kind == "d1":
        first = sum(safe_sqrt(s) for s in sq)
        second = sum(sq)
        pair = jnp.where(size[None, :] == 1, first, second)
    else:
        pair = sum(safe_sqrt(s) ** r for s in sq)
    return mass + jnp.sum(member * w[:, None] * pair), cell_of


class VoronoiCells(NamedTuple):
    """`assignment[i]` = the true atom j whose cell $A_j$ holds fitted atom i; `sizes[j]` = $|A_j|$."""

    assignment: Int[Array, "k"]
    sizes: Int[Array, "k_star"]


def cell_sizes(cell_of, m):
    """|A_j| for j < m from the assignment."""
    return jnp.sum(jax.nn.one_hot(cell_of, m, dtype=jnp.int32), axis=0)


class ParameterErrors(NamedTuple):
    r"""Errors per true atom j (arrays of length $k^*$) and their aggregates by cell type.

    - `cell_size[j]` $= |A_j|$;
    - `mass_error[j]` $= |\sum_{i \in A_j} w_i - w^*_j|$ with $w = e^{\beta_0}$ ($e^{\beta_0/\tau}$ for dense-to-sparse);
    - `gate_error[j]` $= \max_{i \in A_j} \|\Delta\beta_{1ij}\|$, `expert_error[j]` $= \max_{i \in A_j} \|\Delta\eta_{ij}\|$;
    - `atom_error[j]` = max of the two (the cell's largest parameter-block error);
    - `exact_error` $= \max_{|A_j| = 1} \max(\text{atom\_error}_j, \text{mass\_error}_j)$ (expected $\sim n^{-1/2}$);
    - `overfit_error` $= \max_{|A_j| > 1} \text{atom\_error}_j$ (unweighted; the merged mass of an over-fitted cell
      converges at $n^{-1/2}$ and is in `mass_error`, not here). An atom whose mass tends to 0, which Theorem 1
      allows anywhere, dominates it;
    - `weighted_error[j]` $= \big(\sum_{i \in A_j} p_i \|\Delta\theta_{ij}\|^2 / \sum_{i \in A_j} p_i\big)^{1/2}$ with
      $p_i = w_i / \sum_l w_l$ and $\Delta\theta = (\Delta\beta_1, \Delta\eta)$: the mass-weighted error that D1's
      over-fitted term $\sum_{i \in A_j} p_i \|\Delta\theta_{ij}\|^2$ bounds; `overfit_error_weighted` $=
      \max_{|A_j| > 1}$ of it (expected $\sim n^{-1/4}$, Theorem 1);
    - `min_mass[j]` $= \min_{i \in A_j} p_i$; `overfit_min_mass` $= \min_{|A_j| > 1}$ of it (the lightest atom of an
      over-fitted cell: no rate, it may tend to 0);
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
    weighted_error: Float[Array, "k_star"]
    min_mass: Float[Array, "k_star"]
    overfit_error_weighted: Float[Array, ""]
    overfit_min_mass: Float[Array, ""]


def masked_max(values, mask, axis=None):
    """max over `mask`, NaN where the mask is empty."""
    got = jnp.max(jnp.where(mask, values, -jnp.inf), axis=axis)
    return jnp.where(jnp.isfinite(got), got, jnp.nan)


def masked_min(values, mask, axis=None):
    """min over `mask`, NaN where the mask is empty."""
    return -masked_max(-values, mask, axis)


def _weighted_cells(w, sq, member):
    """Per true atom j: the mass-weighted RMS of the atoms' squared errors `sq` (k, k*) over its cell, and the
    lightest normalised mass there (NaN for an empty cell)."""
    p = w / jnp.sum(w)
    weight = jnp.where(member, p[:, None], 0.0)
    total = jnp.sum(weight, axis=0)
    rms = safe_sqrt(jnp.sum(weight * sq, axis=0) / jnp.where(total > 0, total, 1.0))
    return jnp.where(total > 0, rms, jnp.nan), masked_min(jnp.broadcast_to(p[:, None], member.shape), member, axis=0)


def cell_errors(w, ws, gate, gs, eta, es, tau_error) -> "ParameterErrors":
    """`ParameterErrors` for flat atoms; `eta`/`es` may be None (no expert block)."""
    omega = gate if eta is None else jnp.concatenate([gate, eta], axis=-1)
    omega_s = gs if es is None else jnp.concatenate([gs, es], axis=-1)
    cell_of = assign(omega, omega_s)
    member = jax.nn.one_hot(cell_of, omega_s.shape[0], dtype=bool)  # (k, k*)
    size = jnp.sum(member, axis=0, dtype=jnp.int32)
    mass = jnp.abs(member.T.astype(w.dtype) @ w - ws)
    gate_sq = pair_sq(gate, gs)
    gate_err = masked_max(safe_sqrt(gate_sq), member, axis=0)
    if eta is None:
        expert_err = jnp.full_like(gate_err, jnp.nan)
        atom, sq = gate_err, gate_sq
    else:
        eta_sq = pair_sq(eta, es)
        expert_err = masked_max(safe_sqrt(eta_sq), member, axis=0)
        atom, sq = jnp.maximum(gate_err, expert_err), gate_sq + eta_sq
    exact = masked_max(jnp.maximum(atom, mass), size == 1)
    over = masked_max(atom, size > 1)
    weighted, lightest = _weighted_cells(w, sq, member)
    return ParameterErrors(size, mass, gate_err, expert_err, atom, exact, over,
                           jnp.asarray(tau_error, dtype=w.dtype), jnp.sum(size == 0, dtype=jnp.int32),
                           weighted, lightest, masked_max(weighted, size > 1), masked_min(lightest, size > 1))


class ExpertSupErrors(NamedTuple):
    r"""`sup_error[j]` $= \max_{i \in A_j} \sup_x |h(x, \eta_i) - h(x, \eta^*_j)|$ (NaN for an empty cell),
    `cell_size[j]` $= |A_j|$; `exact_error` / `overfit_error`: max over cells with $|A_j| = 1$ / $> 1$ (NaN if
    none). Hierarchical: arrays of shape $(k_1, k_2^*)$, fitted group $i_1$ against its level-1 cell's true group."""

    sup_error: Float[Array, "*groups k_star"]
    cell_size: Int[Array, "*groups k_star"]
    exact_error: Float[Array, ""]
    overfit_error: Float[Array, ""]


def expert_values(fn, eta, x):
    over_x = jax.vmap(fn, in_axes=(1, None))
    return jax.vmap(over_x, in_axes=(None, 0))(x, eta)  # (k, n)


def sup_cells(fn, eta, eta_s, omega, omega_s, x):
    cell_of = assign(omega, omega_s)
    member = jax.nn.one_hot(cell_of, omega_s.shape[0], dtype=bool)
    h, hs = expert_values(fn, eta, x), expert_values(fn, eta_s, x)
    sup = jnp.max(jnp.abs(h[:, None, :] - hs[None, :, :]), axis=-1)  # (k, k*)
    return masked_max(sup, member, axis=0), jnp.sum(member, axis=0, dtype=jnp.int32)
