r"""Dense-to-sparse gating with a temperature (eq. 12, linear router; eq. 17, general router g):
$f_G(x) = \sum_i \mathrm{softmax}_i((g(x, \beta_{1i}) + \beta_{0i}) / \tau)\, h(x, \eta_i)$.

- **Symmetries.** A common shift of $\beta_0$ always leaves $f_G$ unchanged; a common shift of $\beta_1$ too
  when the router is linear in $\beta_1$. With a linear router $(\beta_1, \beta_0, \tau) \to \lambda (\beta_1,
  \beta_0, \tau)$, $\lambda > 0$, is also exact (the logits are unchanged): the source of PDE (15).
- **Losses.** Eq. (16) for a linear router (`voronoi_loss_temperature`, Theorem 3), D4 (eq. 18/19) for a
  non-linear one (Theorem 4); weights $e^{\beta_{0i}/\tau}$ for the estimate and $e^{\beta^*_{0j}/\tau^*}$ for
  the truth.
- **Theory (Table 1).** Linear router: parameters slower than any polynomial for any expert (Theorem 3,
  PDE (15)). Non-linear router algebraically independent of a strongly identifiable expert: exactly fitted
  $n^{-1/2}$, over-fitted $n^{-1/4}$ (Theorem 4).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxmoe.validation import require, require_positive_int
from jaxmoe.families import cells as vc
from jaxmoe.families.base import (
    SLOW,
    ParameterBox,
    atoms,
    check_a3_a4,
    check_distinct,
    flat_atoms,
    prepare_pair,
    shape_tree,
    table1_rates,
    translation_tangents,
    uniform_start,
    zero_last,
)
from jaxmoe.families.flat import FlatMoE
from jaxmoe.models.experts import Expert, expert_key, get_expert
from jaxmoe.models.gates import ROUTER_NAMES, Router, check_router, gated_sum, get_router, linear_router, router_key
from jaxmoe.models.user import is_user_spec

__all__ = ["DenseToSparseParams", "DenseToSparseMoE", "voronoi_loss_temperature", "voronoi_loss_d4"]


class DenseToSparseParams(NamedTuple):
    r"""Mixing measure of a dense-to-sparse MoE; `beta1` is the router's parameters (leading axis k)."""

    beta0: Float[Array, "k"]
    beta1: Any
    eta: dict
    tau: Float[Array, ""]


def _parts(params: DenseToSparseParams):
    tau = jnp.asarray(params.tau)
    gate = vc.flat(params.beta1, 1)
    w = jnp.exp(jnp.asarray(params.beta0) / tau)
    return w, gate, jnp.concatenate([gate, vc.flat(params.eta, 1)], axis=-1), tau


def voronoi_loss_temperature(fitted: DenseToSparseParams, truth: DenseToSparseParams, r: float = 1.0, *,
                             translation: str = "normalize") -> Float[Array, ""]:
    r"""The dense-to-sparse loss with a **linear** router (eq. 16; Theorem 3: minimax rate no faster than
    $n^{-1/(2r)}$ for every r).

    $$D_{3,r} = \sum_j \Big|\sum_{i \in A_j} e^{\beta_{0i}/\tau} - e^{\beta^*_{0j}/\tau^*}\Big|
      + \sum_j \sum_{i \in A_j} e^{\beta_{0i}/\tau} \big(\|\Delta\beta_{1ij}\|^r + \sum_l \|\Delta\eta^{(l)}_{ij}\|^r\big)
      + |\tau - \tau^*|^r$$

    Convention: the temperature term is added once (one temperature per measure), not per atom.
    Translation: $(\beta_1, \beta_0) + (t_1, t_0)$, normalised with weights $e^{\beta_0/\tau}$."""
    r = vc.check_r(r)
    fitted = prepare_pair(DenseToSparseMoE, fitted, truth, translation, linear_router=True)
    w, gate, omega, tau = _parts(fitted)
    ws, gs, os_, tau_s = _parts(truth)
    loss, _ = vc.cell_loss(w, ws, omega, os_, [gate] + vc.leaf_blocks(fitted.eta, 1),
                           [gs] + vc.leaf_blocks(truth.eta, 1), "power", r)
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
    fitted = prepare_pair(DenseToSparseMoE, fitted, truth, translation, linear_router=False)
    w, gate, omega, tau = _parts(fitted)
    ws, gs, os_, tau_s = _parts(truth)
    eta, eta_s = vc.flat(fitted.eta, 1), vc.flat(truth.eta, 1)
    tau_b = jnp.broadcast_to(tau, (w.shape[0], 1))
    tau_bs = jnp.broadcast_to(tau_s, (ws.shape[0], 1))
    return vc.cell_loss(w, ws, omega, os_, [gate, eta, tau_b], [gs, eta_s, tau_bs], "d1")[0]


def _check_linear_router(linear_router) -> bool:
    require(linear_router in (True, False), "linear_router", linear_router,
            "must be True or False for dense-to-sparse parameters (is the router linear in beta1?)")
    return bool(linear_router)


@dataclasses.dataclass(frozen=True)
class DenseToSparseMoE(FlatMoE):
    r"""Dense-to-sparse MoE with temperature (eq. 12, linear router; eq. 17, general router g).

    $f_G(x) = \sum_i \mathrm{softmax}_i((g(x, \beta_{1i}) + \beta_{0i}) / \tau)\, h(x, \eta_i)$.
    """

    expert: Expert
    k: int
    d: int
    router: Router = linear_router()
    box: ParameterBox = ParameterBox()

    name: ClassVar[str] = "dense_to_sparse"
    params_type: ClassVar[type] = DenseToSparseParams
    leading_axes: ClassVar[dict] = {"beta0": 1, "beta1": 1, "eta": 1, "tau": 0}
    LOSSES: ClassVar[dict] = {"temperature": voronoi_loss_temperature, "d4": voronoi_loss_d4}
    PDE: ClassVar[str] = "(15)"
    config_keys: ClassVar[tuple[str, ...]] = ("router",)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "router", get_router(self.router))

    def param_shapes(self) -> DenseToSparseParams:
        return DenseToSparseParams((self.k,), shape_tree(self.router.param_shapes(self.d), (self.k,)),
                                   shape_tree(self.expert.param_shapes(self.d), (self.k,)), ())

    def fix_gauge(self, params, pin: bool = False):
        """A common shift of beta0 always leaves f unchanged; a common shift of beta1 only for a linear router."""
        beta1 = params.beta1
        if self.router.is_linear:
            beta1 = zero_last(beta1, 0, pin)
        return params._replace(beta0=zero_last(params.beta0, 0, pin), beta1=beta1)

    def check_parts(self, field: str = "model") -> None:
        super().check_parts(field)
        check_router(self.router, self.d, f"{field}.router")

    def symmetries(self) -> tuple[str, ...]:
        if self.router.is_linear:
            return ("translation of every (beta1_i, beta0_i) by a common (t1, t0)",
                    "scaling (beta1, beta0, tau) -> lambda (beta1, beta0, tau), lambda > 0")
        return ("translation of every beta0_i by a common t0",)

    def symmetry_tangents(self, params) -> dict:
        if not self.router.is_linear:
            return {"translation beta0": translation_tangents(params, "beta0", None)["translation beta0"]}
        scaling = jax.tree_util.tree_map(jnp.zeros_like, params)._replace(
            beta0=params.beta0, beta1=params.beta1, tau=params.tau)
        return {**translation_tangents(params, "beta0", "beta1"), "scaling (beta1, beta0, tau)": scaling}

    def divide_out_symmetries(self, params, truth):
        r"""Linear router: the scaling $(\beta_1, \beta_0, \tau) \to \lambda(\beta_1, \beta_0, \tau)$ with
        $\lambda = \tau^*/\tau$, so the representative has the truth's temperature (the logits, hence $f_G$,
        are unchanged; eq. 16's $|\tau - \tau^*|$ term vanishes and $\Delta\beta_1$ compares tempered gate
        slopes). A non-linear router has no scaling symmetry: `params` unchanged."""
        if not self.router.is_linear:
            return params
        lam = jnp.asarray(truth.tau) / jnp.asarray(params.tau)
        return params._replace(beta0=lam * params.beta0, beta1=lam * params.beta1, tau=lam * params.tau)

    def divided_symmetries(self) -> tuple[str, ...]:
        return ("scaling (beta1, beta0, tau)",) if self.router.is_linear else ()

    @property
    def gate_router(self) -> Router:
        return self.router

    @staticmethod
    def temperature(params):
        return params.tau

    def logits(self, params: DenseToSparseParams, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        """Tempered logits $(g(x, \\beta_{1i}) + \\beta_{0i}) / \\tau$."""
        return (atoms(self.router.fn, params.beta1, x) + params.beta0[:, None]) / params.tau

    def combine(self, logits, values):
        return gated_sum(logits, values)

    def gates(self, logits):
        return jax.nn.softmax(logits, axis=0)

    def logit_coefficient(self, w, h, f):
        return w * (h - f)

    def extra_columns(self, params, c_logit, g) -> list:
        return [jnp.sum(c_logit * -(g + params.beta0[:, None]) / params.tau, axis=0)[:, None]]  # tau

    def near_truth_split(self, key, truth, k_star: int, noise=0.1, offset: int = 0):
        r"""The flat split with $\beta_{0i} = \beta^*_{0j} - \tau^* \log m$, and $\tau = \tau^* e^{\text{noise}\, Z}$."""
        k_split, k_tau = jax.random.split(key)
        beta0, beta1, eta = self.split_atoms(k_split, truth, k_star, noise, offset)
        tau = truth.tau * jnp.exp(noise * jax.random.normal(k_tau, (), truth.tau.dtype))
        return self.project(DenseToSparseParams(beta0, beta1, eta, tau))

    def random_start(self, key, scale: float = 3.0, dtype=None):
        """Uniform start in $[-s, s] \\cap \\Theta$, and $\\log \\tau$ uniform on $[\\log 0.5, \\log 2]$."""
        template = self._template(dtype)
        params, keys = uniform_start(key, template, scale)
        log_tau = jax.random.uniform(keys[-1], (), template.tau.dtype, np.log(0.5), np.log(2.0))
        return self.project(params._replace(tau=jnp.exp(log_tau)))

    def random_truth(self, key, scale: float = 3.0, dtype=None):
        """As the base's, and with a non-linear router the last atom's router parameters set to zero too: A.3
        asks beta1*_{k*} = 0 of every truth, and only a linear router's translation makes that a gauge."""
        params = super().random_truth(key, scale, dtype)
        if self.router.is_linear:
            return params
        return params._replace(beta1=jax.tree_util.tree_map(lambda a: zero_last(a, 0, True), params.beta1))

    def check_truth(self, params: DenseToSparseParams, field: str = "truth", tol: float = 1e-6) -> None:
        """As `SoftmaxMoE.check_truth`, plus tau* > 0 inside the box."""
        self.validate(params, field)
        tau = float(np.asarray(params.tau))
        require(np.isfinite(tau) and tau > 0, f"{field}.tau", tau, "must be > 0")
        self._check_box_and_finite(params, field)
        check_distinct(f"{field}.eta", flat_atoms(params.eta, self.k), tol)
        check_a3_a4(np.asarray(params.beta0), flat_atoms(params.beta1, self.k), f"{field}.beta0", f"{field}.beta1")

    # ---- losses
    @classmethod
    def normalize_translation(cls, fitted, truth, *, linear_router: bool = True, **options):
        tau, tau_star = jnp.asarray(fitted.tau), jnp.asarray(truth.tau)
        if _check_linear_router(linear_router):
            require(not isinstance(fitted.beta1, dict) and np.ndim(fitted.beta1) == 2, "fitted.beta1",
                    type(fitted.beta1).__name__, "a linear router needs beta1 of shape (k, d)")
            b0, b1 = vc.normalize_gate(jnp.asarray(fitted.beta0), jnp.asarray(fitted.beta1),
                                       jnp.asarray(truth.beta0), jnp.asarray(truth.beta1), tau, tau_star)
            return fitted._replace(beta0=b0, beta1=b1)
        b0, _ = vc.normalize_gate(jnp.asarray(fitted.beta0), None, jnp.asarray(truth.beta0), None, tau, tau_star)
        return fitted._replace(beta0=b0)

    @classmethod
    def parameter_errors(cls, fitted, truth, **options) -> vc.ParameterErrors:
        tau, tau_s = jnp.asarray(fitted.tau), jnp.asarray(truth.tau)
        return vc.cell_errors(jnp.exp(jnp.asarray(fitted.beta0) / tau), jnp.exp(jnp.asarray(truth.beta0) / tau_s),
                              vc.flat(fitted.beta1, 1), vc.flat(truth.beta1, 1),
                              vc.flat(fitted.eta, 1), vc.flat(truth.eta, 1), jnp.abs(tau - tau_s))

    @classmethod
    def required_options(cls, options: dict) -> dict:
        """The loss options these parameters need: whether the router is linear (they do not say)."""
        return {"linear_router": _check_linear_router(options.get("linear_router"))}

    @classmethod
    def input_dim(cls, params) -> int | None:
        return None  # beta1 is the router's pytree

    @property
    def loss_options(self) -> dict:
        return {"linear_router": bool(self.router.is_linear)}

    def curve_losses(self) -> dict[str, str]:
        return {"voronoi_temperature": "temperature"} if self.router.is_linear else {"voronoi_d4": "d4"}

    def theory_rates(self) -> dict:
        if self.router.is_linear:
            why = (None, f"{SLOW} (Theorem 3: linear router with temperature, any expert)")
            return {"l2_error": (-0.5, "n^-1/2 up to log n (Proposition 1)"),
                    **{k: why for k in ("voronoi_temperature", "exact_error", "overfit_error",
                                        "overfit_error_weighted")},
                    "cell_mass": (None, "no rate: the lightest atom of an over-fitted cell may have a mass tending to 0")}
        note = " (assumes router and expert algebraically independent: `jaxmoe identify`)"
        return table1_rates(["voronoi_d4"], expert_key(self.expert), "Theorem 4", "Theorem 2", note)

    def identifiability_case(self) -> dict | None:
        """Definition 2 (algebraic independence of router and expert, with the temperature)."""
        return {"router": self.router, "temperature": True}

    # ---- configs
    def config_entries(self) -> dict:
        return {"router": router_key(self.router)}

    @classmethod
    def read_config(cls, table: dict) -> dict:
        router = table.get("router", "linear")
        require(is_user_spec(router) or (isinstance(router, str) and router in ROUTER_NAMES), "model.router", router,
                f"must be one of {list(ROUTER_NAMES)} or 'package.module:name' (a jaxmoe.Router)")
        get_router(router, "model.router")  # a user's module: importable, and a Router
        return {"router": router}

    @classmethod
    def from_config(cls, expert, k_star: int, d: int, box: ParameterBox, entries: dict) -> "DenseToSparseMoE":
        return cls(expert, k_star, d, entries["router"], box)
