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

from jaxmoe._errors import JaxMoEInputError, require_positive_int

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


def get_expert(name: str | Expert) -> Expert:
    """Expert by name (`linear`, `sigmoid`, `tanh`, `gelu`, `relu`, `polynomial2`, `ffn-gelu`, ...)."""
    if isinstance(name, Expert):
        return name
    table = _named()
    if name not in table:
        raise JaxMoEInputError("expert", name, f"must be one of {sorted(table)} or a jaxmoe.Expert")
    return table[name]()
