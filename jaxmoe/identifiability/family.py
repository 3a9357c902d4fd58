r"""The function family of Definitions 1 and 2 (THEORY.md §3-5), built from any expert and router.

For one parameter point $\theta$ the **generator** is

$$F(x; \theta) = e^{\omega^\top x}\; e^{g(x, \beta_1)/\tau}\; h(x, \eta),$$

where the hierarchical factor $e^{\omega^\top x}$ is present only with `hierarchical=True`, $\tau$ is a
parameter only with `temperature=True` (otherwise $\tau = 1$), and the router $g$ defaults to the linear
router $g(x, \beta_1) = \beta_1^\top x$ (softmax gating, eq. 2). The flat parameter vector is
$\theta = (\omega, \beta_1, \tau, \eta)$ in that order; every coordinate gets a readable name
(`omega[0]`, `beta1[0]`, `beta1.W[1,0]`, `tau`, `a[0]`, `b`, `W1[2,0]`, ...).

The **family at $\theta$** is $F$, its $p$ first partial derivatives and its $p(p+1)/2$ distinct second
partial derivatives (mixed partials $\partial_i\partial_j = \partial_j\partial_i$ counted once), all as
functions of $x$. Everything is computed by JAX autodiff (`jax.grad`, `jax.hessian`), `jit`-compiled and
`vmap`-ped over inputs and parameter points.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxmoe.validation import JaxMoEInputError, require, require_positive_int
from jaxmoe.models.experts import Expert, get_expert
from jaxmoe.models.gates import Router, get_router

_RESERVED = ("omega", "beta1", "tau")


class Segment(NamedTuple):
    """One named block of the flat parameter vector."""

    group: str  # "omega" | "beta1" | "tau" | "eta"
    key: str | None  # leaf name inside a dict-valued group, else None
    shape: tuple[int, ...]
    start: int

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


class Family(NamedTuple):
    r"""A generator $F(x;\theta)$ with its flat parameter layout (see the module docstring)."""

    expert: Expert
    router: Router
    temperature: bool
    hierarchical: bool
    d: int
    segments: tuple[Segment, ...]
    param_names: tuple[str, ...]
    router_is_dict: bool

    @property
    def p(self) -> int:
        return len(self.param_names)

    @property
    def n_functions(self) -> int:
        """Functions per parameter point: $1 + p + p(p+1)/2$."""
        p = self.p
        return 1 + p + p * (p + 1) // 2

    def unflatten(self, theta: Float[Array, "p"]) -> dict:
        """Flat vector -> {'omega', 'beta1', 'tau', 'eta'} (absent groups are left out)."""
        out: dict[str, Any] = {}
        for seg in self.segments:
            leaf = theta[seg.start : seg.start + seg.size].reshape(seg.shape)
            if seg.key is None:
                out[seg.group] = leaf
            else:
                out.setdefault(seg.group, {})[seg.key] = leaf
        return out

    def F(self, x: Float[Array, "d"], theta: Float[Array, "p"]) -> Float[Array, ""]:
        r"""$F(x;\theta) = e^{\omega^\top x} e^{g(x,\beta_1)/\tau} h(x,\eta)$."""
        parts = self.unflatten(theta)
        logit = self.router.fn(x, parts["beta1"])
        if self.temperature:
            logit = logit / parts["tau"]
        if self.hierarchical:
            logit = logit + jnp.dot(parts["omega"], x)
        return jnp.exp(logit) * self.expert.fn(x, parts["eta"])

    def function_names(self) -> tuple[str, ...]:
        """Names of the family at one point: `F`, `dF/d<i>`, `d2F/d<i>^2`, `d2F/d<i>d<j>` (i < j)."""
        names = self.param_names
        out = ["F"] + [f"dF/d{n}" for n in names]
        for i in range(len(names)):
            for j in range(i, len(names)):
                out.append(f"d2F/d{names[i]}^2" if i == j else f"d2F/d{names[i]}d{names[j]}")
        return tuple(out)


def _index_names(base: str, shape: tuple[int, ...]) -> list[str]:
    if shape == ():
        return [base]
    return [f"{base}[{','.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def _shape_of(field: str, shape: Any) -> tuple[int, ...]:
    ok = isinstance(shape, (tuple, list)) and all(isinstance(i, (int, np.integer)) and int(i) >= 1 for i in shape)
    require(ok, field, shape, "must be a tuple of positive ints (use () for a scalar)")
    return tuple(int(i) for i in shape)


def _as_expert(expert: Any) -> Expert:
    if isinstance(expert, (str, Expert)):
        return get_expert(expert)
    raise JaxMoEInputError(
        "expert", expert, "must be an expert name or jaxmoe.Expert(name, fn(x, eta) -> scalar, param_shapes(d) -> {name: shape})"
    )


def _as_router(router: Any) -> Router:
    if router is None:
        return get_router("linear")
    if isinstance(router, (str, Router)):
        return get_router(router)
    raise JaxMoEInputError("router", router, "must be a router name, a jaxmoe.Router or None (linear, softmax gating)")


def build_family(
    expert: str | Expert,
    router: str | Router | None = None,
    *,
    temperature: bool = False,
    hierarchical: bool = False,
    d: int = 1,
) -> Family:
    r"""The generator $F$ of Definition 1 (softmax gating: `router=None`, no temperature), of Definition 2
    (`router=...`, `temperature=True`) or of the two-level hierarchical model (`hierarchical=True`, eq. 28).

    Checks that the expert and router have the documented signatures and return finite scalars; a bad
    one raises `JaxMoEInputError` naming it.
    """
    d = require_positive_int("d", d)
    expert, router = _as_expert(expert), _as_router(router)
    require(isinstance(temperature, bool), "temperature", temperature, "must be True or False")
    require(isinstance(hierarchical, bool), "hierarchical", hierarchical, "must be True or False")
    try:
        eshapes = expert.param_shapes(d)
    except Exception as err:  # noqa: BLE001 - user code
        raise JaxMoEInputError("expert.param_shapes", expert.name, f"must be param_shapes(d) -> {{name: shape}}; it raised {err!r}") from None
    require(isinstance(eshapes, dict) and len(eshapes) > 0, "expert.param_shapes", eshapes, "must return a non-empty dict {name: shape}")
    for name in eshapes:
        require(isinstance(name, str) and name not in _RESERVED, "expert parameter name", name, f"must be a str other than {list(_RESERVED)}")
    try:
        rshapes = router.param_shapes(d)
    except Exception as err:  # noqa: BLE001 - user code
        raise JaxMoEInputError("router.param_shapes", router.name, f"must be param_shapes(d) -> shape or {{name: shape}}; it raised {err!r}") from None

    segments: list[Segment] = []
    names: list[str] = []
    start = 0

    def add(group: str, key: str | None, shape: tuple[int, ...], label: str):
        nonlocal start
        segments.append(Segment(group, key, shape, start))
        names.extend(_index_names(label, shape))
        start += segments[-1].size

    if hierarchical:
        add("omega", None, (d,), "omega")
    router_is_dict = isinstance(rshapes, dict)
    if router_is_dict:
        for key, shape in rshapes.items():
            add("beta1", str(key), _shape_of(f"router shape {key}", shape), f"beta1.{key}")
    else:
        add("beta1", None, _shape_of("router.param_shapes(d)", rshapes), "beta1")
    if temperature:
        add("tau", None, (), "tau")
    for key, shape in eshapes.items():
        add("eta", key, _shape_of(f"expert shape {key}", shape), key)
    fam = Family(expert, router, temperature, hierarchical, d, tuple(segments), tuple(names), router_is_dict)
    _check_callables(fam)
    return fam


def _check_callables(fam: Family) -> None:
    """Trace h and g once on abstract inputs: wrong signatures or non-scalar outputs fail here, clearly."""
    x = jax.ShapeDtypeStruct((fam.d,), jnp.float32)
    parts = jax.eval_shape(fam.unflatten, jax.ShapeDtypeStruct((fam.p,), jnp.float32))
    for what, obj, arg in (("expert", fam.expert, parts["eta"]), ("router", fam.router, parts["beta1"])):
        try:
            out = jax.eval_shape(obj.fn, x, arg)
        except Exception as err:  # noqa: BLE001 - user code
            raise JaxMoEInputError(
                f"{what}.fn", obj.name, f"must be fn(x, params) -> scalar with x of shape ({fam.d},); calling it raised {type(err).__name__}: {err}"
            ) from None
        ok = hasattr(out, "shape") and tuple(out.shape) == () and jnp.issubdtype(out.dtype, jnp.floating)
        require(ok, f"{what}.fn", obj.name, f"must return a float scalar, got {getattr(out, 'shape', type(out))}")


def draw_points(fam: Family, key: jax.Array, n_points: int, low: float = 0.5, high: float = 2.0) -> Float[Array, "P p"]:
    r"""`n_points` random parameter points: every coordinate is $s\,u$ with a random sign $s = \pm 1$ and
    $u \sim U[\text{low}, \text{high}]$, except $\tau \sim U[\text{low}, \text{high}]$.

    Coordinates are kept away from 0 on purpose: many families degenerate there ($a = 0$ makes a ridge
    expert constant, $\beta_1 = 0$ a router constant) and a draw near such a point makes an independent
    family numerically dependent. Distinct with probability one (Definitions 1-2 need distinct points)."""
    n_points = require_positive_int("n_points", n_points)
    require(np.isfinite(low) and np.isfinite(high) and 0 < low < high, "parameter range", (low, high), "must be finite with 0 < low < high")
    k_sign, k_mag = jax.random.split(key)
    mag = jax.random.uniform(k_mag, (n_points, fam.p), minval=low, maxval=high)
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n_points, fam.p)), 1.0, -1.0)
    theta = sign * mag
    for seg in fam.segments:
        if seg.group == "tau":
            theta = theta.at[:, seg.start].set(mag[:, seg.start])
    return theta


def draw_inputs(key: jax.Array, d: int, n_inputs: int, low: float = -1.0, high: float = 1.0) -> Float[Array, "n d"]:
    """`n_inputs` inputs $x \\sim U[\\text{low}, \\text{high}]^d$ (THEORY.md §1 default input law)."""
    if isinstance(n_inputs, (int, np.integer)) and not isinstance(n_inputs, bool) and int(n_inputs) <= 0:
        raise JaxMoEInputError("n_inputs", n_inputs, "must be an integer >= 1: no inputs were drawn, so no function can be evaluated")
    n_inputs = require_positive_int("n_inputs", n_inputs)
    require(np.isfinite(low) and np.isfinite(high) and low < high, "input range", (low, high), "must be finite with low < high")
    return jax.random.uniform(key, (n_inputs, d), minval=low, maxval=high)


def _family_at(F: Callable) -> Callable:
    """(x, theta) -> [F, grad, upper-triangular Hessian], one vector of length 1 + p + p(p+1)/2."""

    def one(x, theta):
        p = theta.shape[0]
        val = F(x, theta)
        grad = jax.grad(F, argnums=1)(x, theta)
        hess = jax.hessian(F, argnums=1)(x, theta)
        iu = jnp.triu_indices(p)
        return jnp.concatenate([val[None], grad, hess[iu]])

    return one


def family_matrix(fam: Family, xs: Float[Array, "n d"], thetas: Float[Array, "P p"]) -> Float[Array, "n P m"]:
    r"""The family evaluated on inputs: entry $[i, k, j]$ is function $j$ of point $\theta_k$ at $x_i$.

    `jit(vmap(vmap(...)))` of autodiff derivatives; runs in float64 when the inputs are float64.
    """
    one = _family_at(fam.F)
    fn = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    return fn(xs, thetas)
