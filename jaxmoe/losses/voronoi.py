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

**Where the code lives.** Each loss is defined in its family's module (`jaxmoe.families.softmax`,
`dense_to_sparse`, `hierarchical`, `sigmoid`) on the shared cell geometry of `jaxmoe.families.cells`; this
module is the family-independent entry point: it finds the family of a parameter NamedTuple and calls it.

**Norms.** D1, D4 and D_H use $\|\Delta\eta\|$ of the whole flattened expert vector; the power-r losses
(D2r, eq. 16, eq. 29) take one norm per expert leaf, $\|\Delta a\|^r + |\Delta b|^r$ as in eq. (10).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jaxtyping import Array, Float

from jaxmoe.validation import require
from jaxmoe.families import FAMILIES, family_of
from jaxmoe.families.base import prepare_pair
from jaxmoe.families.cells import TRANSLATIONS, VoronoiCells, check_r, check_translation
from jaxmoe.families.dense_to_sparse import voronoi_loss_d4, voronoi_loss_temperature
from jaxmoe.families.hierarchical import HierarchicalCells, voronoi_loss_hierarchical
from jaxmoe.families.sigmoid import voronoi_loss_sigmoid
from jaxmoe.families.softmax import voronoi_loss_d1, voronoi_loss_d2r

__all__ = [
    "LOSSES", "TRANSLATIONS", "VoronoiCells", "HierarchicalCells", "batched_loss", "check_r", "check_translation",
    "normalize_translation", "voronoi_cells", "voronoi_loss_d1", "voronoi_loss_d2r", "voronoi_loss_temperature",
    "voronoi_loss_d4", "voronoi_loss_hierarchical", "voronoi_loss_sigmoid",
]


def normalize_translation(fitted: Any, truth: Any, *, linear_router: bool = True) -> Any:
    r"""The translate of `fitted` that the losses compare with `truth` (module docstring, "Translation").

    Softmax: $(\beta_1, \beta_0)$ shifted. Dense-to-sparse: the same with weights $e^{\beta_0/\tau}$ when
    `linear_router` (then `beta1` must be an array (k, d)); otherwise only $\beta_0$. Hierarchical: level 1
    $(\omega, \kappa)$, then each group's level 2 against the true group of its level-1 cell. Sigmoid: none."""
    family = family_of(truth)
    family.check_pair(fitted, truth)
    return family.normalize_translation(fitted, truth, linear_router=linear_router)


def voronoi_cells(fitted: Any, truth: Any, *, translation: str = "normalize", linear_router: bool = True):
    r"""Voronoi cells of `fitted` around `truth` on $\omega_i = (\beta_{1i}, \eta_i)$ (ties: lowest j).

    Returns `VoronoiCells` (flat families) or `HierarchicalCells`. `linear_router` matters only for
    dense-to-sparse parameters (whether $\beta_1$ is translated)."""
    family = family_of(truth)
    fitted = prepare_pair(family, fitted, truth, translation, linear_router=linear_router)
    return family.voronoi_cells(fitted, truth)


# Every family's losses by key (`batched_loss("d1", ...)`).
LOSSES: dict[str, Callable] = {key: fn for family in FAMILIES.values() for key, fn in family.LOSSES.items()}


def batched_loss(loss: Callable | str, fitted_batch: Any, truth: Any, **kwargs) -> Float[Array, "batch"]:
    """`loss` (a loss function or its key in `LOSSES`) on every fit of `fitted_batch` (leading batch axis on
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
