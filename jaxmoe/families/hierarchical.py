r"""Two-level hierarchical softmax gating (eq. 20): $k_1$ groups of $k_2$ experts,

$$f_G(x) = \sum_{i_1} \mathrm{softmax}_{i_1}(\omega_{i_1}^\top x + \kappa_{i_1})
  \sum_{i_2} \mathrm{softmax}_{i_2}(\beta_{1 i_2|i_1}^\top x + \beta_{0 i_2|i_1})\, h(x, \eta_{i_1 i_2}).$$

- **Symmetries and gauge.** Translations at level 1 $(\omega, \kappa)$ and, in each group, at level 2; fits pin
  the last group's $(\omega, \kappa)$ and each group's last expert gate to zero. The number of groups
  $k_1 = k_1^*$ is known; over-fitting happens in $k_2$.
- **Structured Jacobian.** With group weights $W_{i_1}$, inner mixtures $m_{i_1} = \sum_{i_2} V_{i_2|i_1}
  h_{i_1 i_2}$: $\partial f/\partial \ell_{i_1} = W_{i_1}(m_{i_1} - f)$ and $\partial f/\partial \ell_{i_2|i_1} =
  W_{i_1} V_{i_2|i_1}(h_{i_1 i_2} - m_{i_1})$.
- **Losses.** $D_H$ (eq. 25) and its power-r version (eq. 29); level-1 cells on $\omega$, level-2 cells within
  each fitted group against the true group of its level-1 cell.
- **Theory (Table 1).** Strongly identifiable experts: level 1 and exactly fitted level-2 atoms $n^{-1/2}$,
  over-fitted $n^{-1/4}$ (Theorem 5). Linear experts: PDEs (28), slower than any polynomial (Theorem 6).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmoe.validation import require, require_positive_int
from jaxmoe.families import cells as vc
from jaxmoe.families.base import (
    MoEFamily,
    ParameterBox,
    atoms,
    check_a3_a4,
    check_distinct,
    flat_atoms,
    jacobian_columns,
    per_atom_jacobian,
    prepare_pair,
    scale_leaves,
    shape_tree,
    split_assignment,
    split_level,
    table1_rates,
    translation_tangents,
    zero_last,
)
from jaxmoe.models.experts import Expert, expert_key, get_expert
from jaxmoe.models.gates import gated_sum

__all__ = ["HierarchicalParams", "HierarchicalMoE", "HierarchicalCells", "HierarchicalParameterErrors",
           "voronoi_loss_hierarchical"]


class HierarchicalParams(NamedTuple):
    r"""Two-level mixing measure: level 1 $(\kappa_{i_1}, \omega_{i_1})$, level 2 $(\beta_{0 i_2|i_1}, \beta_{1 i_2|i_1}, \eta_{i_1 i_2})$."""

    kappa: Float[Array, "k1"]
    omega: Float[Array, "k1 d"]
    beta0: Float[Array, "k1 k2"]
    beta1: Float[Array, "k1 k2 d"]
    eta: dict  # each leaf (k1, k2, *expert shape)


class HierarchicalCells(NamedTuple):
    """Level 1: `group_assignment[i1]` = $j_1$ with $i_1 \\in A_{j_1}$, `group_sizes[j1]` = $|A_{j_1}|$.
    Level 2: `assignment[i1, i2]` = $j_2$ with $i_2 \\in A_{j_2|j_1}$ (against true group `group_assignment[i1]`),
    `sizes[i1, j2]` = the size of that cell within fitted group i1."""

    group_assignment: Int[Array, "k1"]
    group_sizes: Int[Array, "k1_star"]
    assignment: Int[Array, "k1 k2"]
    sizes: Int[Array, "k1 k2_star"]


class HierarchicalParameterErrors(NamedTuple):
    r"""`level1`: `ParameterErrors` of the groups (gate $(\kappa, \omega)$; `expert_error` NaN, so
    `atom_error` = `gate_error` $= \|\Delta\omega\|$). `level2`: `ParameterErrors` with a leading axis $k_1$,
    fitted group $i_1$ against the true group of its level-1 cell. `exact_error` / `overfit_error` /
    `overfit_error_weighted` / `overfit_min_mass`: the aggregates over every level-2 cell of every group (NaN when
    there is none of that type; level-2 masses normalised within their group)."""

    level1: vc.ParameterErrors
    level2: vc.ParameterErrors
    exact_error: Float[Array, ""]
    overfit_error: Float[Array, ""]
    overfit_error_weighted: Float[Array, ""]
    overfit_min_mass: Float[Array, ""]


def _group_of(fitted, truth):
    """Level-1 cell (true group) of every fitted group, on omega."""
    return vc.assign(jnp.asarray(fitted.omega), jnp.asarray(truth.omega))


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
    eq. (10). Translation: level 1 and each group's level 2 (`jaxmoe.losses.voronoi`)."""
    kind = "d1" if r is None else "power"
    r = 1.0 if r is None else vc.check_r(r)
    fitted = prepare_pair(HierarchicalMoE, fitted, truth, translation)
    kappa, omega = jnp.asarray(fitted.kappa), jnp.asarray(fitted.omega)
    kappa_s, omega_s = jnp.asarray(truth.kappa), jnp.asarray(truth.omega)
    group = vc.assign(omega, omega_s)
    member = jax.nn.one_hot(group, omega_s.shape[0], dtype=kappa.dtype)
    w, ws = jnp.exp(kappa), jnp.exp(kappa_s)
    mass = jnp.sum(jnp.abs(member.T @ w - ws))
    d_omega = vc.safe_sqrt(jnp.sum((omega - omega_s[group]) ** 2, axis=-1))
    d_omega = d_omega if kind == "d1" else d_omega ** r
    if kind == "d1":
        eta_f, eta_t = [vc.flat(fitted.eta, 2)], [vc.flat(truth.eta, 2)]
    else:
        eta_f, eta_t = vc.leaf_blocks(fitted.eta, 2), vc.leaf_blocks(truth.eta, 2)
    eta_t = [e[group] for e in eta_t]
    b0_t, b1_t = jnp.asarray(truth.beta0)[group], jnp.asarray(truth.beta1)[group]

    def inner(b0, b1, etas, b0s, b1s, etas_s):
        om = jnp.concatenate([b1] + list(etas), axis=-1)
        om_s = jnp.concatenate([b1s] + list(etas_s), axis=-1)
        return vc.cell_loss(jnp.exp(b0), jnp.exp(b0s), om, om_s, [b1] + list(etas), [b1s] + list(etas_s), kind, r)[0]

    inner_losses = jax.vmap(inner)(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1), eta_f, b0_t, b1_t, eta_t)
    return mass + jnp.sum(w * (d_omega + inner_losses))


@dataclasses.dataclass(frozen=True)
class HierarchicalMoE(MoEFamily):
    r"""Two-level hierarchical softmax MoE (eq. 20): k1 groups of k2 experts.

    $f_G(x) = \sum_{i_1} \mathrm{softmax}_{i_1}(\omega_{i_1}^\top x + \kappa_{i_1})
    \sum_{i_2} \mathrm{softmax}_{i_2}(\beta_{1 i_2|i_1}^\top x + \beta_{0 i_2|i_1})\, h(x, \eta_{i_1 i_2})$.
    """

    expert: Expert
    k1: int
    k2: int
    d: int
    box: ParameterBox = ParameterBox()

    name: ClassVar[str] = "hierarchical"
    params_type: ClassVar[type] = HierarchicalParams
    leading_axes: ClassVar[dict] = {"kappa": 1, "omega": 1, "beta0": 2, "beta1": 2, "eta": 2}
    LOSSES: ClassVar[dict] = {"hierarchical": voronoi_loss_hierarchical}
    PDE: ClassVar[str] = "(28)"
    config_keys: ClassVar[tuple[str, ...]] = ("k1",)

    def __post_init__(self):
        object.__setattr__(self, "expert", get_expert(self.expert))
        require_positive_int("k1", self.k1)
        require_positive_int("k2", self.k2)
        require_positive_int("d", self.d)

    @property
    def num_atoms(self) -> int:
        return self.k1 * self.k2

    @property
    def components(self) -> int:
        return self.k2

    def param_shapes(self) -> HierarchicalParams:
        k1, k2, d = self.k1, self.k2, self.d
        return HierarchicalParams((k1,), (k1, d), (k1, k2), (k1, k2, d), shape_tree(self.expert.param_shapes(d), (k1, k2)))

    def with_k(self, k2: int) -> "HierarchicalMoE":
        """The number of groups k1 is known (= k1*); over-fitting happens in k2."""
        return dataclasses.replace(self, k2=k2)

    def _box_bounds(self):
        s = self.param_shapes()
        (kl, ol, b0l, b1l), (kh, oh, b0h, b1h) = self.box.gate_bounds((s.kappa, s.omega, s.beta0, s.beta1))
        el, eh = self.box.expert_bounds(s.eta)
        return HierarchicalParams(kl, ol, b0l, b1l, el), HierarchicalParams(kh, oh, b0h, b1h, eh)

    def fix_gauge(self, params, pin: bool = False):
        """Level 1: the last group's (kappa, omega) is zero; level 2: in each group the last expert's gate is zero."""
        return params._replace(kappa=zero_last(params.kappa, 0, pin), omega=zero_last(params.omega, 0, pin),
                               beta0=zero_last(params.beta0, 1, pin), beta1=zero_last(params.beta1, 1, pin))

    def symmetries(self) -> tuple[str, ...]:
        return ("translation of every (omega_i1, kappa_i1) by a common (t1, t0)",
                "in each group, translation of every (beta1_i2|i1, beta0_i2|i1) by a common (t1, t0)")

    def symmetry_tangents(self, params) -> dict:
        out = translation_tangents(params, "kappa", "omega")
        zero = jax.tree_util.tree_map(jnp.zeros_like, params)
        for g in range(self.k1):  # each group's own level-2 translations
            out[f"group {g}: translation beta0"] = zero._replace(beta0=zero.beta0.at[g].set(1.0))
            for j in range(self.d):
                out[f"group {g}: translation beta1[:, {j}]"] = zero._replace(beta1=zero.beta1.at[g, :, j].set(1.0))
        return out

    def experts(self, params: HierarchicalParams, x: Float[Array, "d n"]) -> Float[Array, "k1 k2 n"]:
        per_group = jax.vmap(lambda eta: atoms(self.expert.fn, eta, x))
        return per_group(params.eta)

    def group_logits(self, params: HierarchicalParams, x) -> Float[Array, "k1 n"]:
        return params.omega @ x + params.kappa[:, None]

    def expert_logits(self, params: HierarchicalParams, x) -> Float[Array, "k1 k2 n"]:
        return jnp.einsum("abd,dn->abn", params.beta1, x) + params.beta0[:, :, None]

    def __call__(self, params: HierarchicalParams, x: Float[Array, "d n"]) -> Float[Array, "n"]:
        self._check_x(x)
        self.validate(params)
        inner = jax.vmap(gated_sum)(self.expert_logits(params, x), self.experts(params, x))  # (k1, n)
        return gated_sum(self.group_logits(params, x), inner)

    def check_truth(self, params: HierarchicalParams, field: str = "truth", tol: float = 1e-6) -> None:
        """A.1-A.4 at both levels: last group's (omega, kappa) zero, and in every group the last expert's gate zero."""
        self.validate(params, field)
        self._check_box_and_finite(params, field)
        check_distinct(f"{field}.eta", flat_atoms(params.eta, self.num_atoms), tol)
        check_a3_a4(np.asarray(params.kappa), np.asarray(params.omega), f"{field}.kappa", f"{field}.omega")
        for g in range(self.k1):
            check_a3_a4(np.asarray(params.beta0[g]), np.asarray(params.beta1[g]),
                        f"{field}.beta0[{g}]", f"{field}.beta1[{g}]")

    # ---- estimation
    def jacobian(self, params, x):
        n = x.shape[1]
        k1, k2 = self.k1, self.k2
        flat_eta = jax.tree_util.tree_map(lambda a: a.reshape((k1 * k2,) + a.shape[2:]), params.eta)
        h, dh = per_atom_jacobian(self.expert.fn, flat_eta, x)  # (k1 k2, n), leaves (k1 k2, n, ...)
        h = h.reshape(k1, k2, n)
        w1 = jax.nn.softmax(self.group_logits(params, x), axis=0)  # (k1, n)
        v = jax.nn.softmax(self.expert_logits(params, x), axis=1)  # (k1, k2, n)
        inner = jnp.sum(v * h, axis=1)  # (k1, n)
        f = jnp.sum(w1 * inner, axis=0)
        c1 = w1 * (inner - f)  # df / d group logit
        c2 = w1[:, None] * v * (h - inner[:, None])  # df / d expert logit
        weight = (w1[:, None] * v).reshape(k1 * k2, n)  # df / dh
        blocks = [c1.T,  # kappa
                  jnp.moveaxis(c1[:, None, :] * x[None], -1, 0).reshape(n, -1),  # omega (k1, d)
                  jnp.moveaxis(c2, -1, 0).reshape(n, -1),  # beta0 (k1, k2)
                  jnp.moveaxis(c2[:, :, None, :] * x[None, None], -1, 0).reshape(n, -1)]  # beta1 (k1, k2, d)
        blocks += jacobian_columns(scale_leaves(weight, dh), n)  # eta
        return f, jnp.concatenate(blocks, axis=1)

    def near_truth_split(self, key, truth, k_star: int, noise=0.1, offset: int = 0):
        """Level 1 at the truth plus noise; in every group the flat split of its level-2 measure."""
        assign = split_assignment(k_star, self.k2, offset)
        k_lvl1, k_lvl2 = jax.random.split(key)
        ka, kb = jax.random.split(k_lvl1)
        kappa = truth.kappa + noise * jax.random.normal(ka, truth.kappa.shape, truth.kappa.dtype)
        omega = truth.omega + noise * jax.random.normal(kb, truth.omega.shape, truth.omega.dtype)
        beta0, beta1, eta = split_level(k_lvl2, truth.beta0, truth.beta1, truth.eta, assign, 1.0, noise, axis=1)
        return self.project(HierarchicalParams(kappa, omega, beta0, beta1, eta))

    # ---- losses (class level: parameters only)
    @classmethod
    def check_pair_shapes(cls, side: str, params) -> None:
        k1 = np.shape(params.kappa)[0]
        require(np.shape(params.beta0)[0] == k1, f"{side}.beta0.shape", np.shape(params.beta0),
                f"must have k1 = {k1} groups like {side}.kappa")

    @classmethod
    def normalize_translation(cls, fitted, truth, **options):
        kappa, omega = vc.normalize_gate(jnp.asarray(fitted.kappa), jnp.asarray(fitted.omega),
                                         jnp.asarray(truth.kappa), jnp.asarray(truth.omega))
        group = vc.assign(omega, jnp.asarray(truth.omega))
        b0s, b1s = jnp.asarray(truth.beta0)[group], jnp.asarray(truth.beta1)[group]
        b0, b1 = jax.vmap(vc.normalize_gate)(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1), b0s, b1s)
        return fitted._replace(kappa=kappa, omega=omega, beta0=b0, beta1=b1)

    @classmethod
    def voronoi_cells(cls, fitted, truth, **options) -> HierarchicalCells:
        group = _group_of(fitted, truth)
        k2s = np.shape(truth.beta0)[1]
        omega2 = jnp.concatenate([jnp.asarray(fitted.beta1), vc.flat(fitted.eta, 2)], axis=-1)
        omega2_star = jnp.concatenate([jnp.asarray(truth.beta1), vc.flat(truth.eta, 2)], axis=-1)[group]
        assign = jax.vmap(vc.assign)(omega2, omega2_star)
        return HierarchicalCells(group, vc.cell_sizes(group, np.shape(truth.kappa)[0]), assign,
                                 jax.vmap(lambda a: vc.cell_sizes(a, k2s))(assign))

    @classmethod
    def parameter_errors(cls, fitted, truth, **options) -> HierarchicalParameterErrors:
        kappa = jnp.asarray(fitted.kappa)
        level1 = vc.cell_errors(jnp.exp(kappa), jnp.exp(jnp.asarray(truth.kappa)), jnp.asarray(fitted.omega),
                                jnp.asarray(truth.omega), None, None, jnp.nan)
        group = _group_of(fitted, truth)
        eta_s = vc.flat(truth.eta, 2)[group]
        b0_s, b1_s = jnp.asarray(truth.beta0)[group], jnp.asarray(truth.beta1)[group]
        level2 = jax.vmap(lambda b0, b1, e, b0s, b1s, es: vc.cell_errors(
            jnp.exp(b0), jnp.exp(b0s), b1, b1s, e, es, jnp.nan))(
            jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1), vc.flat(fitted.eta, 2), b0_s, b1_s, eta_s)
        exact = vc.masked_max(jnp.maximum(level2.atom_error, level2.mass_error), level2.cell_size == 1)
        over = vc.masked_max(level2.atom_error, level2.cell_size > 1)
        return HierarchicalParameterErrors(level1, level2, exact, over,
                                           vc.masked_max(level2.weighted_error, level2.cell_size > 1),
                                           vc.masked_min(level2.min_mass, level2.cell_size > 1))

    @classmethod
    def expert_sup(cls, fn, fitted, truth, x):
        group = _group_of(fitted, truth)
        eta_s = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[group], truth.eta)
        omega = jnp.concatenate([jnp.asarray(fitted.beta1), vc.flat(fitted.eta, 2)], axis=-1)
        omega_s = jnp.concatenate([jnp.asarray(truth.beta1), vc.flat(truth.eta, 2)], axis=-1)[group]
        return jax.vmap(lambda e, es, o, os_: vc.sup_cells(fn, e, es, o, os_, x))(fitted.eta, eta_s, omega, omega_s)

    @classmethod
    def input_dim(cls, params) -> int | None:
        return jnp.shape(params.beta1)[-1]

    def curve_losses(self) -> dict[str, str]:
        return {"voronoi_hierarchical": "hierarchical"}

    def error_metrics(self, errors, k_star: int) -> dict:
        metrics = {"exact_error": errors.exact_error}
        if self.components > k_star:
            metrics.update(overfit_error=errors.overfit_error, overfit_error_weighted=errors.overfit_error_weighted,
                           cell_mass=errors.overfit_min_mass)
        metrics["level1_error"] = errors.level1.exact_error
        return metrics

    def empty_cells(self, errors):
        return errors.level1.num_empty_cells + errors.level2.num_empty_cells.sum(axis=-1)

    def theory_rates(self) -> dict:
        return table1_rates(["voronoi_hierarchical", "level1_error"], expert_key(self.expert), "Theorem 5", "Theorem 6")

    def identifiability_case(self) -> dict | None:
        """The two-level family of eq. (28)."""
        return {"hierarchical": True}

    # ---- configs
    def config_entries(self) -> dict:
        return {"k1": int(self.k1)}

    @classmethod
    def read_config(cls, table: dict) -> dict:
        k1 = table.get("k1")
        require(isinstance(k1, int) and not isinstance(k1, bool) and k1 >= 1, "model.k1", k1, "must be an integer >= 1")
        return {"k1": k1}

    @classmethod
    def from_config(cls, expert, k_star: int, d: int, box: ParameterBox, entries: dict) -> "HierarchicalMoE":
        return cls(expert, entries["k1"], k_star, d, box)
