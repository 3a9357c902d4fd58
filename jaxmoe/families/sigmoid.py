r"""Sigmoid gating: $f_G(x) = \sum_{i=1}^k \sigma(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i)$, each gate its own
logistic function of the input (not normalised over atoms), as studied in a sibling paper of the one jaxmoe
implements. THEORY.md gives no rate for it, so every theory slope here is `None`; the family exists so that
any model of this shape can be fitted, measured and swept like the paper's (and as the demonstration that a
new family is one module plus a registry line).

- **Symmetries and gauge.** None: $\sigma$ is not translation-invariant, so no coordinate is pinned and the
  losses compare the estimate as it is.
- **Structured Jacobian.** $\partial f / \partial \ell_i = \sigma(\ell_i)(1 - \sigma(\ell_i))\, h_i$ and
  $\partial f / \partial h_i = \sigma(\ell_i)$ (`jaxmoe.families.flat`).
- **Near-truth split.** A cell of m atoms gets $\beta_{0i} = \beta^*_{0j} - \log m$, as for softmax gates. Sigmoid
  gates do not divide: the split reproduces $f_{G^*}$ only where the gate is in its exponential tail
  ($\sigma(z) \approx e^z$), so with `noise=0` and k > k* the start is near the truth, not at it.
- **Loss.** `voronoi_loss_sigmoid`: the D1 form (eq. 6) on weights $e^{\beta_{0i}}$ and cells on
  $(\beta_{1i}, \eta_i)$, with no translation normalisation (there is no symmetry to divide out).
- **Truths.** A.1 (inside $\Theta$, finite) and A.2 (distinct experts); A.3/A.4 are softmax normalisations
  and do not apply.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxmoe.validation import require_positive_int
from jaxmoe.families import cells as vc
from jaxmoe.families.base import ParameterBox, check_distinct, flat_atoms, prepare_pair, shape_tree
from jaxmoe.families.flat import FlatMoE, linear_gate_d1, linear_gate_parts
from jaxmoe.models.experts import Expert, get_expert

__all__ = ["SigmoidParams", "SigmoidGatingMoE", "voronoi_loss_sigmoid"]

NO_THEORY = "THEORY.md gives no rate for sigmoid gating"


class SigmoidParams(NamedTuple):
    r"""Mixing measure of a sigmoid-gating MoE: k atoms $(\beta_{0i}, \beta_{1i}, \eta_i)$."""

    beta0: Float[Array, "k"]
    beta1: Float[Array, "k d"]
    eta: dict  # each leaf (k, *expert shape)


def voronoi_loss_sigmoid(fitted: SigmoidParams, truth: SigmoidParams, *, translation: str = "none") -> Float[Array, ""]:
    r"""The D1 form (eq. 6) for sigmoid gating: mass terms on $e^{\beta_0}$, first powers of the parameter
    differences in exactly fitted cells and squares in over-fitted ones. No rate is claimed for it.
    `translation` is accepted for a uniform interface; both values compare the estimate as it is."""
    return linear_gate_d1(prepare_pair(SigmoidGatingMoE, fitted, truth, translation), truth)


@dataclasses.dataclass(frozen=True)
class SigmoidGatingMoE(FlatMoE):
    r"""Sigmoid-gating MoE with k atoms in dimension d: $f_G(x) = \sum_i \sigma(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i)$."""

    expert: Expert
    k: int
    d: int
    box: ParameterBox = ParameterBox()

    name: ClassVar[str] = "sigmoid"
    params_type: ClassVar[type] = SigmoidParams
    leading_axes: ClassVar[dict] = {"beta0": 1, "beta1": 1, "eta": 1}
    LOSSES: ClassVar[dict] = {"sigmoid": voronoi_loss_sigmoid}

    def logits(self, params: SigmoidParams, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        return params.beta1 @ x + params.beta0[:, None]

    def combine(self, logits, values):
        return jnp.sum(jax.nn.sigmoid(logits) * values, axis=0)

    def gates(self, logits):
        return jax.nn.sigmoid(logits)

    def logit_coefficient(self, w, h, f):
        return w * (1.0 - w) * h

    def check_truth(self, params: SigmoidParams, field: str = "truth", tol: float = 1e-6) -> None:
        """A.1 (finite, inside Theta) and A.2 (distinct experts)."""
        self.validate(params, field)
        self._check_box_and_finite(params, field)
        check_distinct(f"{field}.eta", flat_atoms(params.eta, self.k), tol)

    # ---- losses
    @classmethod
    def normalize_translation(cls, fitted, truth, **options):
        return fitted  # no symmetry to divide out

    def curve_losses(self) -> dict[str, str]:
        return {"voronoi_sigmoid": "sigmoid"}

    def theory_rates(self) -> dict:
        return {k: (None, NO_THEORY) for k in ("l2_error", "voronoi_sigmoid", "exact_error", "overfit_error",
                                               "overfit_error_weighted", "cell_mass")}

    def identifiability_case(self) -> dict | None:
        return None  # THEORY.md states no identifiability condition for sigmoid gating

