r"""Named ground truths, one for each row of Table 1 of the paper (THEORY.md §6).

Every truth is in d = 1 on $X \sim U[-1, 1]$ with noise $\sigma = 0.1$, and is chosen so that a finite-n
study shows the asymptotics (THEORY.md §7):

- gates are **well separated**: each atom owns an interval of the input range where its gate weight is
  close to 1 (gate slopes 4-8, transitions inside the range, not at its edge);
- experts are **distinct and not alike**: on the interval where its gate is active each ridge expert's
  pre-activation $a x + b$ stays within about $[-3, 2]$, away from the sigmoid tail where
  $\sigma(z) \approx e^{z}$ would let expert and gate merge into one exponential (the linear-expert
  interaction of PDE (9) returning approximately and blowing up the constants);
- all parameters lie well inside the default box $\Theta$ ($|\cdot| \le 10$), so the constraint is
  inactive at the truth and the estimator is the interior least-squares estimator of the theory.

The fitted number of atoms defaults to $k^* + 1$ (over-fitted, the interesting case; for the hierarchical
rows $k_2 = k_2^* + 1$ per group, with $k_1 = k_1^*$ known).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoe.validation import JaxMoEInputError, require, require_positive_int
from jaxmoe.data import InputLaw, UniformInputs, check_sigma
from jaxmoe.families import (
    DenseToSparseMoE,
    DenseToSparseParams,
    HierarchicalMoE,
    HierarchicalParams,
    SoftmaxMoE,
    SoftmaxParams,
)
from jaxmoe.models.gates import activation_router


@dataclasses.dataclass(frozen=True)
class Setting:
    """A ground truth to study: a model with $k^*$ atoms, its true mixing measure, noise, input law, fitted k.

    `truth` is stored in float64 NumPy; `truth_params()` returns it in JAX's current default float dtype.
    """

    name: str
    model: Any  # a family model (`jaxmoe.families`) with the true number of atoms
    truth: Any
    sigma: float = 0.1
    inputs: InputLaw = UniformInputs()
    k_fit: int | None = None  # fitted atoms (k2 per group for hierarchical); None -> k* + 1
    row: str = ""
    theory: str = ""
    why: str = ""
    # A local alternative (jaxmoe.bounds.local_alternatives): the data come from `fitted_model()` at these
    # parameters (k_fit atoms) instead of from the truth; starts and metrics still refer to `truth`, so the
    # estimator is the same function of the data under both.
    data_truth: Any = None

    def __post_init__(self):
        check_sigma(self.sigma)
        self.inputs.validate()
        truth = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), self.truth)
        object.__setattr__(self, "truth", truth)
        self.model.check_truth(truth)
        k_star = self.k_star
        k_fit = k_star + 1 if self.k_fit is None else require_positive_int("k_fit", self.k_fit)
        if k_fit < k_star:
            raise JaxMoEInputError("k_fit", k_fit, f"must be >= k* = {k_star} (the estimator needs at least k* atoms)")
        object.__setattr__(self, "k_fit", k_fit)
        if self.data_truth is not None:
            data = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), self.data_truth)
            fitted = self.model.with_k(k_fit)
            fitted.validate(data, "data_truth")  # shapes only: a local alternative's atoms may (nearly) coincide
            finite = all(bool(np.all(np.isfinite(a))) for a in jax.tree_util.tree_leaves(data))
            require(finite and fitted.in_box(data, 1e-12), "data_truth", "a measure outside the box",
                    "must be finite parameters of the fitted model inside Theta")
            object.__setattr__(self, "data_truth", data)

    @property
    def k_star(self) -> int:
        return self.model.components

    @property
    def d(self) -> int:
        return self.model.d

    def truth_params(self):
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.result_type(float)), self.truth)

    def data_source(self):
        """(model, params) the data are drawn from: (`model`, the truth), or (`fitted_model()`, `data_truth`)."""
        if self.data_truth is None:
            return self.model, self.truth_params()
        dtype = jnp.result_type(float)
        return self.fitted_model(), jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), self.data_truth)

    def fitted_model(self, k: int | None = None):
        """The model fitted to data: the same family with k (default `k_fit`) atoms."""
        k = self.k_fit if k is None else k
        if k < self.k_star:
            raise JaxMoEInputError("k", k, f"must be >= k* = {self.k_star}")
        return self.model.with_k(k)

    def replace(self, **changes) -> "Setting":
        return dataclasses.replace(self, **changes)


def _arr(*rows):
    return np.array(rows, dtype=np.float64)


# Gate shared by rows 1-3: atom 1 owns x > 0 (gate weight sigmoid(4x): 0.98 at x = 1), atom 2 owns x < 0.
_GATE_BETA1 = _arr([4.0], [0.0])
_GATE_BETA0 = _arr(0.0, 0.0)
# Ridge experts of rows 1, 3, 4. Expert 1 (active on x > -0.5): 3x - 1 in [-2.5, 2];
# expert 2 (active on x < 0.5): -2.5x - 0.5 in [-1.75, 2]. One increasing, one decreasing.
_RIDGE_ETA = {"a": _arr([3.0], [-2.5]), "b": _arr(-1.0, -0.5)}


def _softmax_ridge() -> Setting:
    model = SoftmaxMoE("sigmoid", k=2, d=1)
    return Setting(
        "softmax-ridge", model, SoftmaxParams(_GATE_BETA0, _GATE_BETA1, _RIDGE_ETA),
        row="softmax gating, ridge FFN expert (sigmoid)",
        theory="L2 ~ n^-1/2; D1 ~ n^-1/2; exact-fitted atoms n^-1/2, over-fitted n^-1/4 (Theorem 1)",
        why="Gate sigmoid(4x) splits [-1,1] at 0; each expert's pre-activation stays in [-2.5, 2] where its "
            "gate is active, away from the sigmoid tail (THEORY.md §7: a tail-active expert gave slope -0.38).",
    )


def _softmax_linear() -> Setting:
    model = SoftmaxMoE("linear", k=2, d=1)
    eta = {"a": _arr([2.0], [-1.5]), "b": _arr(1.0, 0.5)}
    return Setting(
        "softmax-linear", model, SoftmaxParams(_GATE_BETA0, _GATE_BETA1, eta),
        row="softmax gating, linear expert",
        theory="L2 ~ n^-1/2; parameters slower than any polynomial (Theorem 2, PDE (9))",
        why="Same gate as softmax-ridge so the only change is the expert; two clearly different lines "
            "(slopes 2 and -1.5), so a slow rate cannot be blamed on experts that look alike.",
    )


def _dts_linear_router() -> Setting:
    model = DenseToSparseMoE("sigmoid", k=2, d=1, router="linear")
    return Setting(
        "dts-linear-router", model, DenseToSparseParams(_GATE_BETA0, _GATE_BETA1, _RIDGE_ETA, np.float64(1.0)),
        row="dense-to-sparse gating, linear router, ridge expert (any expert)",
        theory="L2 ~ n^-1/2; parameters slower than any polynomial (Theorem 3, PDE (15))",
        why="softmax-ridge with a temperature tau* = 1: the gate function is identical, so any slow-down is "
            "the temperature's (the linear router makes (beta1, tau) -> beta1/tau degenerate).",
    )


def _dts_nonlinear_router() -> Setting:
    model = DenseToSparseMoE("sigmoid", k=2, d=1, router=activation_router("tanh"))
    beta1 = _arr([3.0], [0.0])
    return Setting(
        "dts-nonlinear-router", model, DenseToSparseParams(_GATE_BETA0, beta1, _RIDGE_ETA, np.float64(0.25)),
        row="dense-to-sparse gating, non-linear router tanh(beta1 x), ridge expert (sigmoid)",
        theory="L2 ~ n^-1/2; exact n^-1/2, over-fitted n^-1/4 (Theorem 4, algebraic independence)",
        why="Router tanh(3x) saturates, so tau* = 0.25 gives tempered logit gaps up to 4*tanh(3) = 3.98: gate "
            "weights from 0.02 to 0.98, as separated as softmax-ridge; the experts are softmax-ridge's.",
    )


# Hierarchical rows: groups split at x = 0 (omega = 6); inside each group the two experts split at
# x = +-0.5 (beta1 = 8, beta0 = -+4), so each of the four experts owns a quarter of [-1, 1].
_H_KAPPA = _arr(0.0, 0.0)
_H_OMEGA = _arr([6.0], [0.0])
_H_BETA0 = _arr([-4.0, 0.0], [4.0, 0.0])
_H_BETA1 = np.array([[[8.0], [0.0]], [[8.0], [0.0]]])


def _hierarchical_ridge() -> Setting:
    model = HierarchicalMoE("sigmoid", k1=2, k2=2, d=1)
    # Each expert's pre-activation is in [-1, 1.5] on its own quarter (e.g. 4x - 3 on [0.5, 1]); group 2's
    # experts differ from group 1's (slopes +-3, not +-4) so f is not a repeated zig-zag.
    eta = {"a": np.array([[[4.0], [-4.0]], [[3.0], [-3.0]]]), "b": _arr([-3.0, 1.0], [1.5, -2.0])}
    return Setting(
        "hierarchical-ridge", model, HierarchicalParams(_H_KAPPA, _H_OMEGA, _H_BETA0, _H_BETA1, eta),
        row="two-level hierarchical softmax gating, ridge FFN expert (sigmoid)",
        theory="L2 ~ n^-1/2; level 1 n^-1/2; level 2 exact n^-1/2, over-fitted n^-1/4 (Theorem 5)",
        why="Four experts, each owning a quarter of [-1, 1] with pre-activation in [-1, 1.5] there; group gate "
            "slope 6 and expert gate slope 8 keep every gate transition sharp but inside the range.",
    )


def _hierarchical_linear() -> Setting:
    model = HierarchicalMoE("linear", k1=2, k2=2, d=1)
    eta = {"a": np.array([[[2.0], [-2.0]], [[1.5], [-1.0]]]), "b": _arr([-1.0, 1.0], [0.5, -0.5])}
    return Setting(
        "hierarchical-linear", model, HierarchicalParams(_H_KAPPA, _H_OMEGA, _H_BETA0, _H_BETA1, eta),
        row="two-level hierarchical softmax gating, linear expert",
        theory="L2 ~ n^-1/2; parameters slower than any polynomial, level 1 included (Theorem 6, PDE (28))",
        why="The hierarchical-ridge gates with four distinct lines as experts.",
    )


_BUILDERS = {
    "softmax-ridge": _softmax_ridge,
    "softmax-linear": _softmax_linear,
    "dts-linear-router": _dts_linear_router,
    "dts-nonlinear-router": _dts_nonlinear_router,
    "hierarchical-ridge": _hierarchical_ridge,
    "hierarchical-linear": _hierarchical_linear,
}
PRESET_NAMES = tuple(_BUILDERS)


def get_preset(name: str) -> Setting:
    """The named preset (one per row of Table 1): see `PRESET_NAMES`."""
    if name not in _BUILDERS:
        raise JaxMoEInputError("preset", name, f"must be one of {list(PRESET_NAMES)}")
    return _BUILDERS[name]()
