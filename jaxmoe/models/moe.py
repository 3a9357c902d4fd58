r"""The three model families of the paper, as pure regression functions $f_G(x)$ of a mixing measure.

- `SoftmaxMoE` (eq. 2): $f_G(x) = \sum_i \mathrm{softmax}_i(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i)$.
- `DenseToSparseMoE` (eq. 12, 17): $f_G(x) = \sum_i \mathrm{softmax}_i((g(x, \beta_{1i}) + \beta_{0i})/\tau)\, h(x, \eta_i)$.
- `HierarchicalMoE` (eq. 20): two nested softmax gates, $k_1$ groups of $k_2$ experts.

A model is a frozen (hashable) dataclass, so it can be a static argument of `jit`; calling it,
`model(params, x)`, is the pure function $f_G(x)$. Inputs are laid out `x: Float[Array, "d n"]`: the long
sample axis last and contiguous. Parameters are NamedTuples of arrays whose leading axis is the atom
index (the mixing measure $G = \sum_i e^{\beta_{0i}} \delta_{(\beta_{1i}, \eta_i)}$); each model carries
its compact parameter box $\Theta$ (assumption A.1).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxmoe._errors import JaxMoEInputError, require, require_positive_int
from jaxmoe.models.experts import Expert, get_expert
from jaxmoe.models.gates import Router, gated_sum, get_router, linear_router


class SoftmaxParams(NamedTuple):
    r"""Mixing measure of a softmax-gating MoE: k atoms $(\beta_{0i}, \beta_{1i}, \eta_i)$."""

    beta0: Float[Array, "k"]
    beta1: Float[Array, "k d"]
    eta: dict  # each leaf (k, *expert shape)


class DenseToSparseParams(NamedTuple):
    r"""Mixing measure of a dense-to-sparse MoE; `beta1` is the router's parameters (leading axis k)."""

    beta0: Float[Array, "k"]
    beta1: Any
    eta: dict
    tau: Float[Array, ""]


class HierarchicalParams(NamedTuple):
    r"""Two-level mixing measure: level 1 $(\kappa_{i_1}, \omega_{i_1})$, level 2 $(\beta_{0 i_2|i_1}, \beta_{1 i_2|i_1}, \eta_{i_1 i_2})$."""

    kappa: Float[Array, "k1"]
    omega: Float[Array, "k1 d"]
    beta0: Float[Array, "k1 k2"]
    beta1: Float[Array, "k1 k2 d"]
    eta: dict  # each leaf (k1, k2, *expert shape)


@dataclasses.dataclass(frozen=True)
class ParameterBox:
    r"""The compact parameter set $\Theta$ (A.1): $|\text{gate entry}| \le$ `gate`, $|\eta$ entry$| \le$ `expert`,
    $\tau \in$ `tau`. Without it a least-squares fit can run off to a step-function gate ($|\beta_1| \to \infty$)."""

    gate: float = 10.0
    expert: float = 10.0
    tau: tuple[float, float] = (0.1, 10.0)

    def __post_init__(self):
        require(np.isfinite(self.gate) and self.gate > 0, "box.gate", self.gate, "must be finite and > 0")
        require(np.isfinite(self.expert) and self.expert > 0, "box.expert", self.expert, "must be finite and > 0")
        lo, hi = self.tau
        require(0 < lo < hi < np.inf, "box.tau", self.tau, "must be (lo, hi) with 0 < lo < hi < inf")


def _shape_tree(shapes: Any, lead: tuple[int, ...]) -> Any:
    """Prefix every shape in a (dict of / single) shape tuple(s) with the atom axes `lead`."""
    if isinstance(shapes, dict):
        return {name: lead + tuple(s) for name, s in shapes.items()}
    return lead + tuple(shapes)


def _is_shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def _check_tree(field: str, value: Any, shapes: Any) -> None:
    """Raise naming `field` unless `value` has the structure and shapes of `shapes`."""
    if isinstance(shapes, dict):
        require(isinstance(value, dict) and set(value) == set(shapes), field,
                sorted(value) if isinstance(value, dict) else type(value).__name__,
                f"must be a dict with keys {sorted(shapes)}")
        for name, s in shapes.items():
            _check_tree(f"{field}[{name!r}]", value[name], s)
        return
    got = tuple(np.shape(value))
    require(got == tuple(shapes), f"{field}.shape", got, f"must be {tuple(shapes)}")


def _atoms(fn, params_tree, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
    """Evaluate a pointwise function fn(x_j, theta_i) for every atom i (axis 0) and sample j (axis 1 of x)."""
    over_samples = jax.vmap(fn, in_axes=(1, None))
    return jax.vmap(over_samples, in_axes=(None, 0))(x, params_tree)


def _as_float(tree):
    """Convert every array-like (lists included) below dicts to the default float dtype."""
    if isinstance(tree, dict):
        return {name: _as_float(v) for name, v in tree.items()}
    return jnp.asarray(tree, dtype=jnp.result_type(float))


def _flat_atoms(tree, k: int) -> np.ndarray:
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.asarray(leaf, dtype=float).reshape(k, -1) for leaf in leaves], axis=1)


def _check_distinct(field: str, eta_flat: np.ndarray, tol: float) -> None:
    k = eta_flat.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            dist = float(np.linalg.norm(eta_flat[i] - eta_flat[j]))
            require(dist > tol, field, f"atoms {i} and {j} at distance {dist:.3g}",
                    f"A.2 needs distinct expert parameters (distance > {tol})")


class _Family:
    """Shared validation, box and truth checks; subclasses define shapes and the regression function."""

    d: int
    box: ParameterBox

    def param_shapes(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_atoms(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def components(self) -> int:  # pragma: no cover - abstract
        """The number of components that `with_k` sets and over-fitting varies (k, or k2 per group)."""
        raise NotImplementedError

    def _check_x(self, x) -> None:
        shape = tuple(np.shape(x))
        require(len(shape) == 2 and shape[0] == self.d, "x.shape", shape,
                f"must be (d, n) = ({self.d}, n): the sample axis is last")

    def validate(self, params, field: str = "params") -> None:
        """Raise `JaxMoEInputError` unless `params` has this model's structure and shapes."""
        shapes = self.param_shapes()
        cls = type(shapes)
        require(isinstance(params, cls), field, type(params).__name__, f"must be a jaxmoe.{cls.__name__}")
        for name in cls._fields:
            _check_tree(f"{field}.{name}", getattr(params, name), getattr(shapes, name))

    def make_params(self, **fields):
        """Build this model's parameter NamedTuple from arrays (converted to the default float dtype) and validate it."""
        cls = type(self.param_shapes())
        missing = set(cls._fields) - set(fields)
        extra = set(fields) - set(cls._fields)
        require(not missing and not extra, "fields", sorted(fields), f"must be exactly {list(cls._fields)}")
        params = cls(**{name: _as_float(v) for name, v in fields.items()})
        self.validate(params)
        return params

    def zeros(self):
        """All-zero parameters of the right shapes (a template for `vmap` and initialisers)."""
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s), self.param_shapes(), is_leaf=_is_shape)

    def bounds(self, gauge: bool = False):
        r"""(lower, upper) parameter trees of the box $\Theta$.

        With `gauge=True` the coordinates fixed by `fix_gauge` are pinned (lower = upper = 0): the softmax
        translation freedom is removed, so the box bounds the identified *relative* gate parameters and a
        solver cannot drift along an exactly flat direction into the box's faces.
        """
        lo, hi = self._box_bounds()
        if gauge:
            lo, hi = self.fix_gauge(lo, pin=True), self.fix_gauge(hi, pin=True)
        return lo, hi

    def _box_bounds(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def fix_gauge(self, params, pin: bool = False):
        r"""Translate the gate parameters so the last atom's gate is zero (the A.3 normalisation), which leaves
        $f_G$ unchanged. With `pin=True`, set those coordinates to 0 without translating (used for bounds)."""
        raise NotImplementedError  # pragma: no cover

    def project(self, params, gauge: bool = False):
        r"""Euclidean projection onto the box $\Theta$ (coordinate-wise clip)."""
        lo, hi = self.bounds(gauge)
        return jax.tree_util.tree_map(jnp.clip, params, lo, hi)

    def in_box(self, params, slack: float = 0.0) -> bool:
        lo, hi = self.bounds()
        oks = jax.tree_util.tree_map(
            lambda p, l, h: bool(np.all((np.asarray(p) >= np.asarray(l) - slack) & (np.asarray(p) <= np.asarray(h) + slack))),
            params, lo, hi)
        return all(jax.tree_util.tree_leaves(oks))

    def _check_box_and_finite(self, params, field: str) -> None:
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            name = field + jax.tree_util.keystr(path)
            require(bool(np.all(np.isfinite(np.asarray(leaf)))), name, np.asarray(leaf).tolist(), "must be finite")
        lo, hi = self.bounds()
        for (path, p), l, h in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                   jax.tree_util.tree_leaves(lo), jax.tree_util.tree_leaves(hi)):
            p = np.asarray(p)
            ok = np.all((p >= np.asarray(l)) & (p <= np.asarray(h)))
            require(bool(ok), field + jax.tree_util.keystr(path), p.tolist(),
                    f"must lie in the parameter box Theta [{float(np.min(l))}, {float(np.max(h))}] (A.1)")


def _gate_bounds(box: ParameterBox, shapes):
    g = box.gate
    return (jax.tree_util.tree_map(lambda s: jnp.full(s, -g), shapes, is_leaf=_is_shape),
            jax.tree_util.tree_map(lambda s: jnp.full(s, g), shapes, is_leaf=_is_shape))


def _expert_bounds(box: ParameterBox, shapes):
    e = box.expert
    return (jax.tree_util.tree_map(lambda s: jnp.full(s, -e), shapes, is_leaf=_is_shape),
            jax.tree_util.tree_map(lambda s: jnp.full(s, e), shapes, is_leaf=_is_shape))


class _FlatFamily(_Family):
    r"""Softmax and dense-to-sparse gating: $f_G = \sum_i \mathrm{softmax}_i(\text{logits}) h(x, \eta_i)$ over k atoms."""

    def experts(self, params, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        return _atoms(self.expert.fn, params.eta, x)

    def __call__(self, params, x: Float[Array, "d n"]) -> Float[Array, "n"]:
        self._check_x(x)
        self.validate(params)
        return gated_sum(self.logits(params, x), self.experts(params, x))


@dataclasses.dataclass(frozen=True)
class SoftmaxMoE(_FlatFamily):
    r"""Softmax-gating MoE (eq. 2) with k atoms in dimension d.

    $f_G(x) = \sum_{i=1}^k \mathrm{softmax}_i(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i)$.
    """

    expert: Expert
    k: int
    d: int
    box: ParameterBox = ParameterBox()

    def __post_init__(self):
        object.__setattr__(self, "expert", get_expert(self.expert))
        require_positive_int("k", self.k)
        require_positive_int("d", self.d)

    family = "softmax"

    @property
    def num_atoms(self) -> int:
        return self.k

    @property
    def components(self) -> int:
        return self.k

    def param_shapes(self) -> SoftmaxParams:
        return SoftmaxParams((self.k,), (self.k, self.d), _shape_tree(self.expert.param_shapes(self.d), (self.k,)))

    def with_k(self, k: int) -> "SoftmaxMoE":
        return dataclasses.replace(self, k=k)

    def _box_bounds(self):
        s = self.param_shapes()
        (b0l, b1l), (b0h, b1h) = _gate_bounds(self.box, (s.beta0, s.beta1))
        el, eh = _expert_bounds(self.box, s.eta)
        return SoftmaxParams(b0l, b1l, el), SoftmaxParams(b0h, b1h, eh)

    def fix_gauge(self, params, pin: bool = False):
        return params._replace(beta0=_zero_last(params.beta0, 0, pin), beta1=_zero_last(params.beta1, 0, pin))

    def logits(self, params: SoftmaxParams, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        return params.beta1 @ x + params.beta0[:, None]

    def check_truth(self, params: SoftmaxParams, field: str = "truth", tol: float = 1e-6) -> None:
        """Raise unless `params` is a valid truth: in Theta (A.1), distinct experts (A.2),
        last atom's gate zero (A.3), some beta1 non-zero (A.4)."""
        self.validate(params, field)
        self._check_box_and_finite(params, field)
        _check_distinct(f"{field}.eta", _flat_atoms(params.eta, self.k), tol)
        _check_a3_a4(np.asarray(params.beta0), np.asarray(params.beta1), f"{field}.beta0", f"{field}.beta1")


def _zero_last(a, axis: int, pin: bool):
    """Subtract the last entry along `axis` (pin=False), or set that entry to zero (pin=True)."""
    if pin:
        index = (slice(None),) * axis + (-1,)
        return a.at[index].set(0.0)
    return a - jnp.take(a, jnp.asarray([a.shape[axis] - 1]), axis=axis)


def _check_a3_a4(beta0: np.ndarray, beta1: np.ndarray, name0: str, name1: str) -> None:
    """A.3: the last atom's gate is zero; A.4: some slope is non-zero (only meaningful for k > 1)."""
    k = beta0.shape[0]
    beta1_flat = beta1.reshape(k, -1)
    require(bool(np.all(beta1_flat[-1] == 0) and beta0[-1] == 0), f"{name1}[-1], {name0}[-1]",
            (beta1_flat[-1].tolist(), float(beta0[-1])), "A.3 needs the last atom's gate to be zero")
    if k > 1:
        require(bool(np.any(beta1_flat != 0)), name1, beta1_flat.tolist(), "A.4 needs some slope != 0")


@dataclasses.dataclass(frozen=True)
class DenseToSparseMoE(_FlatFamily):
    r"""Dense-to-sparse MoE with temperature (eq. 12, linear router; eq. 17, general router g).

    $f_G(x) = \sum_i \mathrm{softmax}_i((g(x, \beta_{1i}) + \beta_{0i}) / \tau)\, h(x, \eta_i)$.
    """

    expert: Expert
    k: int
    d: int
    router: Router = linear_router()
    box: ParameterBox = ParameterBox()

    family = "dense_to_sparse"

    def __post_init__(self):
        object.__setattr__(self, "expert", get_expert(self.expert))
        object.__setattr__(self, "router", get_router(self.router))
        require_positive_int("k", self.k)
        require_positive_int("d", self.d)

    @property
    def num_atoms(self) -> int:
        return self.k

    @property
    def components(self) -> int:
        return self.k

    def param_shapes(self) -> DenseToSparseParams:
        return DenseToSparseParams((self.k,), _shape_tree(self.router.param_shapes(self.d), (self.k,)),
                                   _shape_tree(self.expert.param_shapes(self.d), (self.k,)), ())

    def with_k(self, k: int) -> "DenseToSparseMoE":
        return dataclasses.replace(self, k=k)

    def _box_bounds(self):
        s = self.param_shapes()
        (b0l, b1l), (b0h, b1h) = _gate_bounds(self.box, (s.beta0, s.beta1))
        el, eh = _expert_bounds(self.box, s.eta)
        lo, hi = self.box.tau
        return DenseToSparseParams(b0l, b1l, el, jnp.asarray(lo)), DenseToSparseParams(b0h, b1h, eh, jnp.asarray(hi))

    def fix_gauge(self, params, pin: bool = False):
        """A common shift of beta0 always leaves f unchanged; a common shift of beta1 only for a linear router."""
        beta1 = params.beta1
        if self.router.is_linear:
            beta1 = _zero_last(beta1, 0, pin)
        return params._replace(beta0=_zero_last(params.beta0, 0, pin), beta1=beta1)

    def logits(self, params: DenseToSparseParams, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
        """Tempered logits $(g(x, \\beta_{1i}) + \\beta_{0i}) / \\tau$."""
        return (_atoms(self.router.fn, params.beta1, x) + params.beta0[:, None]) / params.tau

    def check_truth(self, params: DenseToSparseParams, field: str = "truth", tol: float = 1e-6) -> None:
        """As `SoftmaxMoE.check_truth`, plus tau* > 0 inside the box."""
        self.validate(params, field)
        tau = float(np.asarray(params.tau))
        require(np.isfinite(tau) and tau > 0, f"{field}.tau", tau, "must be > 0")
        self._check_box_and_finite(params, field)
        _check_distinct(f"{field}.eta", _flat_atoms(params.eta, self.k), tol)
        _check_a3_a4(np.asarray(params.beta0), _flat_atoms(params.beta1, self.k), f"{field}.beta0", f"{field}.beta1")


@dataclasses.dataclass(frozen=True)
class HierarchicalMoE(_Family):
    r"""Two-level hierarchical softmax MoE (eq. 20): k1 groups of k2 experts.

    $f_G(x) = \sum_{i_1} \mathrm{softmax}_{i_1}(\omega_{i_1}^\top x + \kappa_{i_1})
    \sum_{i_2} \mathrm{softmax}_{i_2}(\beta_{1 i_2|i_1}^\top x + \beta_{0 i_2|i_1})\, h(x, \eta_{i_1 i_2})$.
    """

    expert: Expert
    k1: int
    k2: int
    d: int
    box: ParameterBox = ParameterBox()

    family = "hierarchical"

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
        return HierarchicalParams((k1,), (k1, d), (k1, k2), (k1, k2, d), _shape_tree(self.expert.param_shapes(d), (k1, k2)))

    def with_k(self, k2: int) -> "HierarchicalMoE":
        """The number of groups k1 is known (= k1*); over-fitting happens in k2."""
        return dataclasses.replace(self, k2=k2)

    def _box_bounds(self):
        s = self.param_shapes()
        (kl, ol, b0l, b1l), (kh, oh, b0h, b1h) = _gate_bounds(self.box, (s.kappa, s.omega, s.beta0, s.beta1))
        el, eh = _expert_bounds(self.box, s.eta)
        return HierarchicalParams(kl, ol, b0l, b1l, el), HierarchicalParams(kh, oh, b0h, b1h, eh)

    def fix_gauge(self, params, pin: bool = False):
        """Level 1: the last group's (kappa, omega) is zero; level 2: in each group the last expert's gate is zero."""
        return params._replace(kappa=_zero_last(params.kappa, 0, pin), omega=_zero_last(params.omega, 0, pin),
                               beta0=_zero_last(params.beta0, 1, pin), beta1=_zero_last(params.beta1, 1, pin))

    def experts(self, params: HierarchicalParams, x: Float[Array, "d n"]) -> Float[Array, "k1 k2 n"]:
        per_group = jax.vmap(lambda eta: _atoms(self.expert.fn, eta, x))
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
        _check_distinct(f"{field}.eta", _flat_atoms(params.eta, self.num_atoms), tol)
        _check_a3_a4(np.asarray(params.kappa), np.asarray(params.omega), f"{field}.kappa", f"{field}.omega")
        for g in range(self.k1):
            _check_a3_a4(np.asarray(params.beta0[g]), np.asarray(params.beta1[g]),
                         f"{field}.beta0[{g}]", f"{field}.beta1[{g}]")


MODEL_FAMILIES = ("softmax", "dense_to_sparse", "hierarchical")


def regression_function(model: _Family, params, x: Float[Array, "d n"]) -> Float[Array, "n"]:
    """$f_G(x)$: the same as `model(params, x)`."""
    return model(params, x)
