r"""Experts $h(x, \eta)$ (THEORY.md §2).

An expert is a plain JAX function of **one** input `x: Float[Array, "d"]` and **one** expert's
parameters `eta` (a dict of arrays) returning a scalar. jaxmoe vmaps it over the sample axis and over
the k atoms, so a user-written expert needs no batching logic:

```python
import jax.numpy as jnp, jaxmoe
sine = jaxmoe.Expert("sine", lambda x, eta: eta["a"] * jnp.sin(eta["b"] * x[0]),
                     lambda d: {"a": (), "b": ()})
```
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxmoe.validation import JaxMoEInputError, require, require_positive_int
from jaxmoe.models.user import is_user_spec, load_instance

ParamShapes = dict[str, tuple[int, ...]]


class Expert(NamedTuple):
    """An expert family $h(x, \\eta)$.

    - `fn(x, eta) -> scalar` with `x: Float[Array, "d"]` and `eta` a dict of arrays;
    - `param_shapes(d) -> {name: shape}` the shapes of one expert's parameters.
    """

    name: str
    fn: Callable[[jax.Array, dict], jax.Array]
    param_shapes: Callable[[int], ParamShapes]

    def __call__(self, x, eta):
        return self.fn(x, eta)


def _gelu(z):
    # The paper's GELU is z * Phi(z) (exact, erf-based), not the tanh approximation.
    return jax.nn.gelu(z, approximate=False)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": _gelu,
    "relu": jax.nn.relu,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise JaxMoEInputError("activation", name, f"must be one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _ab_shapes(d: int) -> ParamShapes:
    return {"a": (d,), "b": ()}


def linear() -> Expert:
    r"""Linear expert $h(x, (a, b)) = a^\top x + b$ (not strongly identifiable: PDE (9))."""
    return Expert("linear", lambda x, eta: jnp.dot(eta["a"], x) + eta["b"], _ab_shapes)


def ridge(activation: str = "sigmoid") -> Expert:
    r"""Ridge / one-neuron FFN expert $h(x, (a, b)) = \sigma(a^\top x + b)$."""
    sigma = get_activation(activation)
    return Expert(activation, lambda x, eta: sigma(jnp.dot(eta["a"], x) + eta["b"]), _ab_shapes)


def polynomial(degree: int = 2) -> Expert:
    r"""Polynomial expert $h(x, (a, b)) = (a^\top x + b)^p$ (not strongly identifiable)."""
    p = require_positive_int("degree", degree, 1)
    return Expert(f"polynomial{p}", lambda x, eta: (jnp.dot(eta["a"], x) + eta["b"]) ** p, _ab_shapes)


def ffn(width: int = 4, activation: str = "sigmoid") -> Expert:
    r"""Two-layer FFN expert $h(x, (W_1, c, w_2)) = w_2^\top \sigma(W_1 x + c)$ of hidden width m."""
    m = require_positive_int("width", width, 1)
    sigma = get_activation(activation)

    def fn(x, eta):
        return jnp.dot(eta["w2"], sigma(eta["W1"] @ x + eta["c"]))

    return Expert(f"ffn{m}-{activation}", fn, lambda d: {"W1": (m, d), "c": (m,), "w2": (m,)})


def _named() -> dict[str, Callable[[], Expert]]:
    table: dict[str, Callable[[], Expert]] = {"linear": linear}
    for act in ACTIVATIONS:
        table[act] = lambda act=act: ridge(act)
        table[f"ffn-{act}"] = lambda act=act: ffn(4, act)
    for p in (2, 3):
        table[f"polynomial{p}"] = lambda p=p: polynomial(p)
    return table


EXPERT_NAMES = tuple(_named())


def expert_key(expert: Expert) -> str:
    """The registry name of an expert (`get_expert(expert_key(e))` rebuilds it): its name, except the FFN's,
    whose name carries its width (`ffn4-gelu` -> `ffn-gelu`)."""
    name = expert.name
    if name.startswith("ffn") and "-" in name:
        return "ffn-" + name.split("-", 1)[1]
    return name


def get_expert(name: str | Expert, field: str = "expert") -> Expert:
    """Expert by name (`linear`, `sigmoid`, `tanh`, `gelu`, `relu`, `polynomial2`, `ffn-gelu`, ...), or a user's
    `"package.module:name"` (`jaxmoe.models.user`), or a `jaxmoe.Expert` as is."""
    if isinstance(name, Expert):
        return name
    if is_user_spec(name):
        return load_instance(name, field, Expert, "Expert(name, fn(x, eta) -> scalar, param_shapes(d) -> {name: shape})")
    table = _named()
    if name not in table:
        raise JaxMoEInputError(field, name, f"must be one of {sorted(table)}, 'package.module:name' or a jaxmoe.Expert")
    return table[name]()


def check_expert(expert: Expert, d: int, field: str = "expert") -> None:
    """The expert protocol (`jaxmoe.models.user`): `param_shapes(d)` a non-empty dict of shapes and `fn(x, eta)`
    a float scalar for `x` of shape (d,); one-line errors naming `field`."""
    try:
        shapes = expert.param_shapes(d)
    except Exception as err:  # noqa: BLE001 - user code
        raise JaxMoEInputError(f"{field}.param_shapes", expert.name, f"must be param_shapes(d) -> {{name: shape}}; it raised {err!r}") from None
    ok = isinstance(shapes, dict) and len(shapes) > 0 and all(
        isinstance(k, str) and isinstance(s, tuple) and all(isinstance(i, int) and i >= 1 for i in s)
        for k, s in shapes.items())
    require(ok, f"{field}.param_shapes", shapes, "must return a non-empty dict {name: tuple of positive ints}")
    eta = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
    check_scalar_fn(expert.fn, (jax.ShapeDtypeStruct((d,), jnp.float32), eta), f"{field}.fn", expert.name, d)


def check_scalar_fn(fn, args, field: str, name: str, d: int) -> None:
    """`fn(*args)` traces (abstractly) and returns a float scalar."""
    try:
        out = jax.eval_shape(fn, *args)
    except Exception as err:  # noqa: BLE001 - user code
        raise JaxMoEInputError(field, name, f"must be fn(x, params) -> scalar with x of shape ({d},); calling it "
                               f"raised {type(err).__name__}: {err}") from None
    ok = hasattr(out, "shape") and tuple(out.shape) == () and jnp.issubdtype(out.dtype, jnp.floating)
    require(ok, field, name, f"must return a float scalar, got {getattr(out, 'shape', type(out))}")
