"""Truths that are not presets, for the lower-bound lab (issue 14: "the same on truths you choose yourself (d = 2,
tanh/GELU, k* = 3), written down before you look"). The predictions are in experiments/lower_bound_own_truths.md,
committed before any of these was profiled.

Every truth has k* = 3 atoms on X ~ U[-1, 1]^d, sigma = 0.1, fitted with k = k* + 1; gates are separated so that
each atom owns a region of the input box, experts distinct, every parameter well inside the default box (|.| <= 10).
"""

import numpy as np

from jaxmoe.families import DenseToSparseMoE, DenseToSparseParams, SoftmaxMoE, SoftmaxParams
from jaxmoe.models.gates import activation_router
from jaxmoe.presets import Setting

# d = 2 gates: logits 4 x1, -2 x1 + 3.5 x2 + 0.5, 0 (last atom pinned): three regions meeting inside the square.
_BETA1_D2 = np.array([[4.0, 0.0], [-2.0, 3.5], [0.0, 0.0]])
_BETA0_D2 = np.array([0.0, 0.5, 0.0])
# d = 2 ridge experts sigma(a^T x + b), pre-activations within about [-3.5, 3.5] on the square
_ETA_D2 = {"a": np.array([[2.0, 1.0], [-1.0, 2.0], [1.5, -2.0]]), "b": np.array([0.5, -0.5, 0.3])}


def softmax_tanh_d2() -> Setting:
    return Setting("own-softmax-tanh-d2", SoftmaxMoE("tanh", k=3, d=2), SoftmaxParams(_BETA0_D2, _BETA1_D2, _ETA_D2),
                   row="softmax gating, tanh ridge expert, d = 2, k* = 3")


def softmax_gelu_d1() -> Setting:
    # logits 6x - 2, -6x - 2, 0: atom 3 owns |x| < 1/3, atoms 1 and 2 the two ends
    return Setting("own-softmax-gelu-d1", SoftmaxMoE("gelu", k=3, d=1),
                   SoftmaxParams(np.array([-2.0, -2.0, 0.0]), np.array([[6.0], [-6.0], [0.0]]),
                                 {"a": np.array([[2.0], [-1.5], [1.0]]), "b": np.array([-0.5, 0.5, 1.0])}),
                   row="softmax gating, GELU ridge expert, d = 1, k* = 3")


def softmax_linear_d2() -> Setting:
    eta = {"a": np.array([[1.0, 2.0], [-2.0, 1.0], [0.5, -1.0]]), "b": np.array([1.0, -0.5, 0.0])}
    return Setting("own-softmax-linear-d2", SoftmaxMoE("linear", k=3, d=2), SoftmaxParams(_BETA0_D2, _BETA1_D2, eta),
                   row="softmax gating, linear expert, d = 2, k* = 3")


def dts_tanh_router_d2() -> Setting:
    # router tanh(beta1^T x), tau* = 0.3: tempered logit gaps up to about 3 / 0.3 * tanh(3) = 10
    beta1 = np.array([[3.0, 0.0], [-1.0, 3.0], [0.0, 0.0]])  # A.3: the last atom's gate is zero
    return Setting("own-dts-tanh-router-d2", DenseToSparseMoE("gelu", k=3, d=2, router=activation_router("tanh")),
                   DenseToSparseParams(np.array([0.0, 0.0, 0.0]), beta1, _ETA_D2, np.float64(0.3)),
                   row="dense-to-sparse gating, non-linear router tanh(beta1^T x), GELU expert, d = 2, k* = 3")


def dts_linear_router_d2() -> Setting:
    return Setting("own-dts-linear-router-d2", DenseToSparseMoE("tanh", k=3, d=2, router="linear"),
                   DenseToSparseParams(_BETA0_D2, _BETA1_D2, _ETA_D2, np.float64(0.5)),
                   row="dense-to-sparse gating, linear router, tanh expert, d = 2, k* = 3")


R_ALL = (1.0, 2.0, 3.0, 4.0)
# name -> (setting, loss, r values, divide out, predicted verdict, theory exponent per r)
TRUTHS = {
    "own-softmax-tanh-d2": (softmax_tanh_d2, "d1", (None,), False, "polynomial", {None: 1.0}),
    "own-softmax-gelu-d1": (softmax_gelu_d1, "d1", (None,), False, "polynomial", {None: 1.0}),
    "own-softmax-linear-d2": (softmax_linear_d2, "d2r", R_ALL, False, "not_identifiable", {r: 1.0 for r in R_ALL}),
    "own-dts-tanh-router-d2": (dts_tanh_router_d2, "d4", (None,), False, "polynomial", {None: 1.0}),
    "own-dts-linear-router-d2": (dts_linear_router_d2, "temperature", (1.0,), False, "not_identifiable", {1.0: 1.0}),
    "own-dts-linear-router-d2/divided": (dts_linear_router_d2, "temperature", R_ALL, True, "polynomial",
                                         {r: max(1.0, 2.0 / r) for r in R_ALL}),  # amended: see the .md
}
