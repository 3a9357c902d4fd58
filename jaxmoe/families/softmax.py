r"""Softmax gating (eq. 2): $f_G(x) = \sum_{i=1}^k \mathrm{softmax}_i(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i)$.

- **Symmetry and gauge.** The gates are invariant to a common translation $(\beta_{1i}, \beta_{0i}) \to
  (\beta_{1i} + t_1, \beta_{0i} + t_0)$; fits pin the last atom's gate to zero (A.3).
- **Losses.** D1 (eq. 6) for strongly identifiable experts, D2r (eq. 10) for linear experts; weights
  $e^{\beta_{0i}}$, cells on $(\beta_{1i}, \eta_i)$, the estimate normalised to the truth's total mass and
  softmax-weighted mean slope (`jaxmoe.losses.voronoi`).
- **Theory (Table 1).** Strongly identifiable experts: D1 $\sim n^{-1/2}$, exactly fitted atoms $n^{-1/2}$,
  over-fitted $n^{-1/4}$ (Theorem 1). Linear experts: PDE (9), slower than any polynomial (Theorem 2).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxmoe.validation import require_positive_int
from jaxmoe.families import cells as vc
from jaxmoe.families.base import (
    ParameterBox,
    check_a3_a4,
    check_distinct,
    flat_atoms,
    prepare_pair,
    shape_tree,
    table1_rates,
    translation_tangents,
    zero_last,
)
from jaxmoe.families.flat import FlatMoE, linear_gate_d1, linear_gate_parts
from jaxmoe.models.experts import Expert, expert_key, get_expert
from jaxmoe.models.gates import gated_sum

__all__ = ["SoftmaxParams", "SoftmaxMoE", "voronoi_loss_d1", "voronoi_loss_d2r"]


class SoftmaxParams(NamedTuple):
    r"""Mixing measure of a softmax-gating MoE: k atoms $(\beta_{0i}, \beta_{1i}, \eta_i)$."""

    beta0: Float[Array, "k"]
    beta1: Float[Array, "k d"]
    eta: dict  # each leaf (k, *expert shape)


def voronoi_loss_d1(fitted: SoftmaxParams, truth: SoftmaxParams, *, translation: str = "normalize") -> Float[Array, ""]:
    r"""D1 (eq. 6), for strongly identifiable experts (Theorem 1: $D_1(\hat G_n, G^*) = O_P(\sqrt{\log n / n})$).

    $$D_1 = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\Big|
      + \sum_{|A_j|=1} \sum_{i \in A_j} e^{\beta_{0i}} (\|\Delta\beta_{1ij}\| + \|\Delta\eta_{ij}\|)
      + \sum_{|A_j|>1} \sum_{i \in A_j} e^{\beta_{0i}} (\|\Delta\beta_{1ij}\|^2 + \|\Delta\eta_{ij}\|^2)$$

    Translation-invariant in `fitted` (`jaxmoe.losses.voronoi`); vmap over fits with `in_axes=(0, None)`."""
    return linear_gate_d1(prepare_pair(SoftmaxMoE, fitted, truth, translation), truth)


def voronoi_loss_d2r(fitted: SoftmaxParams, truth: SoftmaxParams, r: float = 1.0, *,
                     translation: str = "normalize") -> Float[Array, ""]:
    r"""D2r (eq. 10), any $r \ge 1$, for linear experts (Theorem 2: minimax rate no faster than $n^{-1/(2r)}$).

    $$D_{2,r} = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\Big|
      + \sum_j \sum_{i \in A_j} e^{\beta_{0i}} \big(\|\Delta\beta_{1ij}\|^r + \sum_{\text{leaves } l} \|\Delta\eta^{(l)}_{ij}\|^r\big)$$

    (for the linear expert the leaves are a and b: $\|\Delta a\|^r + |\Delta b|^r$). `r` is static under jit."""
    r = vc.check_r(r)
    fitted = prepare_pair(SoftmaxMoE, fitted, truth, translation)
    w, gate, omega = linear_gate_parts(fitted)
    ws, gs, os_ = linear_gate_parts(truth)
    return vc.cell_loss(w, ws, omega, os_, [gate] + vc.leaf_blocks(fitted.eta, 1),
                        [gs] + vc.leaf_blocks(truth.eta, 1), "power", r)[0]


# D2r at the r a linear-expert rate curve reports; module-level, so `batched_loss` compiles each once
D2R_CURVE = {r: functools.partial(voronoi_loss_d2r, r=float(r)) for r in (1, 2)}


@dataclasses.dataclass(frozen=True)
class SoftmaxMoE(FlatMoE):
    r"""Softmax-gating MoE (eq. 2) with k atoms in dimension d.

    $f_G(x) = \sum_{i=1}^k \mathrm{softmax}_i(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i)$.
    """

    expert: Expert
    k: int
    d: int
    box: ParameterBox = ParameterBox()

    name: ClassVar[str] = "softmax"
    params_type: ClassVar[type] = SoftmaxParams
    leading_axes: ClassVar[dict] = {"beta0": 1, "beta1": 1, "eta": 1}
    LOSSES: ClassVar[dict] = {"d1": voronoi_loss_d1, "d2r": voronoi_loss_d2r}
    PDE: ClassVar[str] = "(9)"

    def fix_gauge(self, params, pin: bool = False):
        return params._replace(beta0=zero_last(params.beta0, 0, pin), beta1=zero_last(params.beta1, 0, pin))

    def symmetries(self) -> tuple[str, ...]:
        return ("translation of every (beta1_i, beta0_i) by a common (t1, t0)",)

    def symmetry_tangents(self, params) -> dict:
        return translation_tangents(params, "beta0", "beta1")

    def logits(self, params: SoftmaxParams, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        return params.beta1 @ x + params.beta0[:, None]

    def combine(self, logits, values):
        return gated_sum(logits, values)

    def gates(self, logits):
        return jax.nn.softmax(logits, axis=0)

    def logit_coefficient(self, w, h, f):
        return w * (h - f)

    def check_truth(self, params: SoftmaxParams, field: str = "truth", tol: float = 1e-6) -> None:
        """Raise unless `params` is a valid truth: in Theta (A.1), distinct experts (A.2),
        last atom's gate zero (A.3), some beta1 non-zero (A.4)."""
        self.validate(params, field)
        self._check_box_and_finite(params, field)
        check_distinct(f"{field}.eta", flat_atoms(params.eta, self.k), tol)
        check_a3_a4(np.asarray(params.beta0), np.asarray(params.beta1), f"{field}.beta0", f"{field}.beta1")

    # ---- losses
    @classmethod
    def normalize_translation(cls, fitted, truth, **options):
        b0, b1 = vc.normalize_gate(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1),
                                   jnp.asarray(truth.beta0), jnp.asarray(truth.beta1))
        return fitted._replace(beta0=b0, beta1=b1)

    def curve_losses(self) -> dict:
        """Metric name -> key in `LOSSES` (or the loss function) of the losses a rate curve reports: D1, and for
        linear experts also D2r at r = 1, 2, the loss Theorem 2 is stated in."""
        if expert_key(self.expert) != "linear":
            return {"voronoi_d1": "d1"}
        return {"voronoi_d1": "d1", **{f"voronoi_d2r_r{r}": fn for r, fn in D2R_CURVE.items()}}

    def theory_rates(self) -> dict:
        return table1_rates(list(self.curve_losses()), expert_key(self.expert), "Theorem 1", "Theorem 2")

    def identifiability_case(self) -> dict | None:
        """`check_independence` arguments of this family's condition: Definition 1 (strong identifiability)."""
        return {"router": None}

