r"""Gates: softmax gating (eq. 2), dense-to-sparse gating with a temperature (eq. 12, 17), and routers.

A router is a plain JAX function $g(x, \beta_1)$ of one input `x: Float[Array, "d"]` and one atom's
router parameters (an array or dict), like an `Expert`. The gate of atom i at x is
$\mathrm{softmax}_i((g(x, \beta_{1i}) + \beta_{0i}) / \tau)$; softmax gating is the linear router with
$\tau = 1$.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxmoe.validation import JaxMoEInputError, require, require_positive_int
from jaxmoe.models.experts import check_scalar_fn, get_activation
from jaxmoe.models.user import is_user_spec, load_instance


class Router(NamedTuple):
    """A router family $g(x, \\beta_1)$; `param_shapes(d)` is a shape tuple (array parameter) or a dict."""

    name: str
    fn: Callable[[jax.Array, Any], jax.Array]
    param_shapes: Callable[[int], Any]
    # True when g is linear in beta1 (and g(x, 0) = 0): gates are then translation-invariant in
    # (beta1, beta0) and the A.3 normalisation beta1*_k = 0 is meaningful as stated in the paper.
    is_linear: bool = False

    def __call__(self, x, beta1):
        return self.fn(x, beta1)


def linear_router() -> Router:
    r"""$g(x, \beta_1) = \beta_1^\top x$ (eq. 2, 12)."""
    return Router("linear", lambda x, b: jnp.dot(b, x), lambda d: (d,), True)


def activation_router(activation: str = "tanh") -> Router:
    r"""$g(x, \beta_1) = \sigma(\beta_1^\top x)$: a non-linear activation after the linear map (eq. 17)."""
    sigma = get_activation(activation)
    return Router(f"{activation}-linear", lambda x, b: sigma(jnp.dot(b, x)), lambda d: (d,))


def mlp_router(width: int = 3, activation: str = "tanh") -> Router:
    r"""$g(x, (W, v)) = \sigma(v^\top \sigma(W x))$: a small MLP followed by an activation (eq. 17)."""
    m = require_positive_int("width", width, 1)
    sigma = get_activation(activation)
    return Router(
        f"mlp{m}-{activation}",
        lambda x, b: sigma(jnp.dot(b["v"], sigma(b["W"] @ x))),
        lambda d: {"W": (m, d), "v": (m,)},
    )


ROUTER_NAMES = ("linear", "tanh", "sigmoid", "gelu", "mlp-tanh", "mlp-sigmoid")


def get_router(name: str | Router, field: str = "router") -> Router:
    """Router by name: `linear`, an activation after a linear map (`tanh`, ...) or `mlp-<activation>`; or a user's
    `"package.module:name"` (`jaxmoe.models.user`), or a `jaxmoe.Router` as is."""
    if isinstance(name, Router):
        return name
    if is_user_spec(name):
        return load_instance(name, field, Router, "Router(name, fn(x, beta1) -> scalar, param_shapes(d), is_linear)")
    if name == "linear":
        return linear_router()
    if name in ("tanh", "sigmoid", "gelu", "relu"):
        return activation_router(name)
    if name.startswith("mlp-") and name[4:] in ("tanh", "sigmoid", "gelu", "relu"):
        return mlp_router(3, name[4:])
    raise JaxMoEInputError(field, name, f"must be one of {list(ROUTER_NAMES)}, 'package.module:name' or a jaxmoe.Router")


def check_router(router: Router, d: int, field: str = "router") -> None:
    """The router protocol (`jaxmoe.models.user`): `param_shapes(d)` a shape tuple or a dict of them, `fn(x, beta1)`
    a float scalar for `x` of shape (d,); one-line errors naming `field`."""
    try:
        shapes = router.param_shapes(d)
    except Exception as err:  # noqa: BLE001 - user code
        raise JaxMoEInputError(f"{field}.param_shapes", router.name, f"must be param_shapes(d) -> shape or {{name: shape}}; it raised {err!r}") from None
    is_shape = lambda s: isinstance(s, tuple) and all(isinstance(i, int) and i >= 1 for i in s)
    ok = is_shape(shapes) or (isinstance(shapes, dict) and len(shapes) > 0 and all(map(is_shape, shapes.values())))
    require(ok, f"{field}.param_shapes", shapes, "must return a shape tuple or a non-empty dict {name: shape}")
    beta1 = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), shapes, is_leaf=is_shape)
    check_scalar_fn(router.fn, (jax.ShapeDtypeStruct((d,), jnp.float32), beta1), f"{field}.fn", router.name, d)


def router_key(router: Router) -> str:
    """The registry name of a router (`get_router(router_key(r))` rebuilds it)."""
    name = router.name
    if name.endswith("-linear"):  # activation_router("tanh").name == "tanh-linear"
        return name[: -len("-linear")]
    if name.startswith("mlp") and "-" in name:
        return "mlp-" + name.split("-", 1)[1]
    return name


def softmax_gate(logits: Float[Array, "k n"]) -> Float[Array, "k n"]:
    r"""$\mathrm{softmax}$ over the atom axis 0, shifted by the max so large logits cannot overflow."""
    return jax.nn.softmax(logits, axis=0)


def dense_to_sparse_gate(logits: Float[Array, "k n"], tau: Float[Array, ""]) -> Float[Array, "k n"]:
    r"""$\mathrm{softmax}(\text{logits} / \tau)$: uniform as $\tau \to \infty$, one-hot as $\tau \to 0$."""
    return jax.nn.softmax(logits / tau, axis=0)


def gated_sum(logits: Float[Array, "k n"], values: Float[Array, "k n"]) -> Float[Array, "n"]:
    r"""$\sum_i \mathrm{softmax}_i(\text{logits}) \, \text{values}_i$, computed stably in one pass."""
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=0, keepdims=True))
    w = jnp.exp(shifted)
    return jnp.sum(w * values, axis=0) / jnp.sum(w, axis=0)
