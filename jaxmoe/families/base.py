r"""What every model family shares: the parameter box $\Theta$, shape checks, and the family protocol.

A **family** (one module each: `softmax`, `dense_to_sparse`, `hierarchical`, `sigmoid`) is a frozen, hashable
dataclass (so it can be a static argument of `jit`) that owns everything the rest of jaxmoe needs to know
about it, as blackjax has one module per algorithm:

| concern | methods |
|---|---|
| the model $f_G(x)$ | `__call__(params, x)`, `param_shapes`, `zeros`, `make_params`, `validate`, `with_k`, `components` |
| the compact set $\Theta$ (A.1) and the gauge | `bounds(gauge)`, `project`, `fix_gauge`, `symmetries`, `symmetry_tangents`, `offset_map`, `check_truth` (A.1-A.4) |
| estimation | `jacobian(params, x)` (structured, per-atom), `near_truth_split`, `random_start`, `random_truth` |
| losses | `params_type`, `leading_axes`, `normalize_translation`, `voronoi_cells`, `parameter_errors`, `expert_sup`, `LOSSES`, `curve_losses`, `loss_options`, `error_metrics` |
| theory | `theory_rates` (slopes of Table 1 by metric, `None` where the paper gives none), `PDE`, `identifiability_case` (the condition the rates rest on, for `jaxmoe.check_model`) |
| configs | `name`, `config_keys`, `read_config`, `config_entries`, `from_config` |

Class-level methods (`normalize_translation`, `voronoi_cells`, `parameter_errors`, `expert_sup`,
`check_pair_shapes`) work on parameters alone, so losses of parameter NamedTuples need no model: the
registry (`jaxmoe.families.family_of`) finds the family of a parameter NamedTuple by its type. Inputs are
laid out `x: Float[Array, "d n"]`: the long sample axis last. Parameters are NamedTuples whose leaves have
the atom axes first (the mixing measure $G = \sum_i e^{\beta_{0i}} \delta_{(\beta_{1i}, \eta_i)}$).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxmoe.validation import require
from jaxmoe.families.cells import check_translation
from jaxmoe.models.experts import check_expert

__all__ = [
    "ParameterBox", "MoEFamily", "STRONG_EXPERTS", "SLOW", "shape_tree", "is_shape", "atoms", "flat_atoms",
    "check_distinct", "zero_last", "check_a3_a4", "per_atom_jacobian", "jacobian_columns", "scale_leaves",
    "split_assignment", "split_level", "perturb", "uniform_start", "prepare_pair", "table1_rates",
    "translation_tangents",
]

# Experts the paper proves strongly identifiable (Theorem 1); THEORY.md §6.
STRONG_EXPERTS = ("sigmoid", "tanh", "gelu", "ffn-sigmoid", "ffn-tanh", "ffn-gelu")
SLOW = "slower than any polynomial"


BOUNDARY_RTOL = 1e-6  # `MoEFamily.on_boundary`: this close to a face of Theta, relative to the box's width


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

    def gate_bounds(self, shapes):
        """(lower, upper) trees of constant -gate / +gate for a tree of shapes."""
        return _constant(shapes, -self.gate), _constant(shapes, self.gate)

    def expert_bounds(self, shapes):
        return _constant(shapes, -self.expert), _constant(shapes, self.expert)


def _constant(shapes, value):
    return jax.tree_util.tree_map(lambda s: jnp.full(s, value), shapes, is_leaf=is_shape)


# ---------------------------------------------------------------------------------------------- shapes
def shape_tree(shapes: Any, lead: tuple[int, ...]) -> Any:
    """Prefix every shape in a (dict of / single) shape tuple(s) with the atom axes `lead`."""
    if isinstance(shapes, dict):
        return {name: lead + tuple(s) for name, s in shapes.items()}
    return lead + tuple(shapes)


def is_shape(x) -> bool:
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


def atoms(fn, params_tree, x: Float[Array, "d n"]) -> Float[Array, "k n"]:
    """Evaluate a pointwise function fn(x_j, theta_i) for every atom i (axis 0) and sample j (axis 1 of x)."""
    over_samples = jax.vmap(fn, in_axes=(1, None))
    return jax.vmap(over_samples, in_axes=(None, 0))(x, params_tree)


def _as_float(tree):
    """Convert every array-like (lists included) below dicts to the default float dtype."""
    if isinstance(tree, dict):
        return {name: _as_float(v) for name, v in tree.items()}
    return jnp.asarray(tree, dtype=jnp.result_type(float))


def flat_atoms(tree, k: int) -> np.ndarray:
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.asarray(leaf, dtype=float).reshape(k, -1) for leaf in leaves], axis=1)


# ---------------------------------------------------------------------------------------------- truths
def check_distinct(field: str, eta_flat: np.ndarray, tol: float) -> None:
    """A.2: distinct expert parameters."""
    k = eta_flat.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            dist = float(np.linalg.norm(eta_flat[i] - eta_flat[j]))
            require(dist > tol, field, f"atoms {i} and {j} at distance {dist:.3g}",
                    f"A.2 needs distinct expert parameters (distance > {tol})")


def zero_last(a, axis: int, pin: bool):
    """Subtract the last entry along `axis` (pin=False), or set that entry to zero (pin=True)."""
    if pin:
        index = (slice(None),) * axis + (-1,)
        return a.at[index].set(0.0)
    return a - jnp.take(a, jnp.asarray([a.shape[axis] - 1]), axis=axis)


def check_a3_a4(beta0: np.ndarray, beta1: np.ndarray, name0: str, name1: str) -> None:
    """A.3: the last atom's gate is zero; A.4: some slope is non-zero (only meaningful for k > 1)."""
    k = beta0.shape[0]
    beta1_flat = beta1.reshape(k, -1)
    require(bool(np.all(beta1_flat[-1] == 0) and beta0[-1] == 0), f"{name1}[-1], {name0}[-1]",
            (beta1_flat[-1].tolist(), float(beta0[-1])), "A.3 needs the last atom's gate to be zero")
    if k > 1:
        require(bool(np.any(beta1_flat != 0)), name1, beta1_flat.tolist(), "A.4 needs some slope != 0")


# ---------------------------------------------------------------------------------------------- Jacobians
def per_atom_jacobian(fn, atom_params, x):
    """value (k, n) and d value / d atom params: leaves (k, n, *leaf shape), for a pointwise fn(x, theta_i)."""
    one = lambda xi, theta: (fn(xi, theta), jax.jacfwd(fn, argnums=1)(xi, theta))
    return jax.vmap(jax.vmap(one, in_axes=(1, None)), in_axes=(None, 0))(x, atom_params)


def jacobian_columns(tree, n):
    """(k, n, *s) leaves -> list of (n, k * prod(s)) blocks in ravel order (atom index slowest)."""
    return [jnp.moveaxis(leaf, 1, 0).reshape(n, -1) for leaf in jax.tree_util.tree_leaves(tree)]


def scale_leaves(coef, tree):
    """Multiply every (k, n, ...) leaf by a (k, n) coefficient (the chain rule through one atom)."""
    return jax.tree_util.tree_map(lambda a: a * coef.reshape(coef.shape + (1,) * (a.ndim - 2)), tree)


# ---------------------------------------------------------------------------------------------- starts
def split_assignment(k_star: int, k: int, offset: int = 0) -> np.ndarray:
    """True atom of each fitted atom: [0, ..., k*-1, o, o+1, ...] (mod k*) with o = `offset` (length k)."""
    return np.array([i if i < k_star else (i - k_star + offset) % k_star for i in range(k)])


def perturb(key, tree, noise):
    """Every leaf plus independent N(0, noise^2) entries."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    new = [leaf + noise * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, new)


def split_level(key, beta0, beta1, eta, assign, tau, noise, axis):
    r"""One gate level split by `assign` along `axis`: a cell of m atoms gets $\beta_0 - \tau \log m$ each
    (the cell's softmax mass is the true atom's), then everything is perturbed."""
    counts = np.bincount(assign)[assign]
    take = lambda a: jnp.take(a, jnp.asarray(assign), axis=axis)
    k0, k1, k2 = jax.random.split(key, 3)
    b0 = take(beta0) - tau * jnp.log(jnp.asarray(counts, beta0.dtype))
    return (b0 + noise * jax.random.normal(k0, b0.shape, b0.dtype),
            perturb(k1, jax.tree_util.tree_map(take, beta1), noise),
            perturb(k2, jax.tree_util.tree_map(take, eta), noise))


def uniform_start(key, template, scale: float):
    """Every coordinate of `template`'s shapes uniform on [-scale, scale]; also returns the leaves' keys."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    keys = jax.random.split(key, len(leaves))
    new = [jax.random.uniform(k, leaf.shape, leaf.dtype, -scale, scale) for k, leaf in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, new), keys


# ---------------------------------------------------------------------------------------------- the protocol
class MoEFamily:
    """The shared part of every family: validation, the box, projection and the default protocol methods.

    A subclass sets the class attributes `name`, `params_type`, `leading_axes`, `LOSSES`, `PDE` and defines
    `param_shapes`, `_box_bounds`, `fix_gauge`, `__call__`, `check_truth`, `components`, `with_k`,
    `near_truth_split`, the class methods `normalize_translation`, `voronoi_cells`, `parameter_errors`,
    `expert_sup`, and `curve_losses`, `error_metrics`, `theory_rates`, `config_entries`, `from_config`."""

    name: ClassVar[str] = ""
    params_type: ClassVar[type] = tuple
    leading_axes: ClassVar[dict[str, int]] = {}
    LOSSES: ClassVar[dict[str, Callable]] = {}
    PDE: ClassVar[str | None] = None  # the PDE of THEORY.md that makes the linear-expert case slow, if any
    config_keys: ClassVar[tuple[str, ...]] = ()  # config keys besides family, expert, d, k_star, k_fit, box
    d: int
    box: ParameterBox

    # ---- the model
    def param_shapes(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_atoms(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def components(self) -> int:  # pragma: no cover - abstract
        """The number of components that `with_k` sets and over-fitting varies (k, or k2 per group)."""
        raise NotImplementedError

    @property
    def family(self) -> str:
        return self.name

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
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s), self.param_shapes(), is_leaf=is_shape)

    def check_parts(self, field: str = "model") -> None:
        """Check the expert (and router) against their protocol (`jaxmoe.models.user`), one-line errors."""
        check_expert(self.expert, self.d, f"{field}.expert")

    # ---- the box and the gauge
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
        r"""Move `params` to the representative of its symmetry class that the fits use (A.3's normalisation),
        leaving $f_G$ unchanged. With `pin=True`, set the pinned coordinates to 0 instead (used for bounds)."""
        return params

    def symmetries(self) -> tuple[str, ...]:
        """The exact symmetries of $f_G$ in the parameters (beyond permutations of atoms), in words."""
        return ()

    def symmetry_tangents(self, params) -> dict[str, Any]:
        r"""{name: tangent} of every exact continuous symmetry at `params`: parameter trees $t$ along which
        $f_G$ does not change, $\partial_s f_{G + s t} = J t = 0$ (translations of softmax gates, the linear
        router's scaling). The null space of the Jacobian that no data can resolve."""
        return {}

    def divide_out_symmetries(self, params, truth):
        r"""The representative of `params`' orbit under the exact symmetries that the family's losses do not
        normalise themselves (none by default: the softmax translation is normalised inside every loss), chosen
        relative to `truth`; $f_G$ is unchanged. A loss evaluated there is a loss on the quotient by those
        symmetries (`divided_symmetries` names them)."""
        return params

    def divided_symmetries(self) -> tuple[str, ...]:
        """Names (keys of `symmetry_tangents`) of the symmetries `divide_out_symmetries` removes."""
        return ()

    def free_coordinates(self) -> np.ndarray:
        """Indices in the flat parameter vector of the coordinates the gauged box leaves free (lower < upper)."""
        lo, hi = self.bounds(gauge=True)
        return np.flatnonzero(np.asarray(jax.flatten_util.ravel_pytree(lo)[0] < jax.flatten_util.ravel_pytree(hi)[0]))

    def on_boundary(self, params, rtol: float = BOUNDARY_RTOL) -> np.ndarray:
        r"""Per fit, whether the fit sits on a face of $\Theta$: any free coordinate of the gauged box (lower <
        upper; the coordinates `fix_gauge` pins are not faces) within `rtol` x (its width) of its lower or upper
        bound. `params`: a parameter tree with leading batch axes (any number, the same on every leaf);
        returns a bool array of that batch shape (a non-finite fit is not flagged: its status says it failed).
        The least-squares estimator lives on the compact $\Theta$, and an over-fitted one often spends its extra
        atom on a face, where its first-order conditions are not an interior minimum's."""
        bounds = self.bounds(gauge=True)
        lo, hi = (np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(b)])
                  for b in bounds)
        leaves, template = jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(bounds[0])
        batch = np.shape(leaves[0])[:np.ndim(leaves[0]) - np.ndim(template[0])]
        flat = np.concatenate([np.asarray(a, np.float64).reshape(batch + (-1,)) for a in leaves], axis=-1)
        width = hi - lo
        near = (flat - lo <= rtol * width) | (hi - flat <= rtol * width)
        return np.any(near & (width > 0), axis=-1)

    def offset_map(self, base):
        r"""Parametrise $G$ as offsets from `base` (e.g. a split truth) with the gauge pinned as the fits pin it:
        returns (p_free, to_params) with `to_params(delta)` the parameters at `base` + delta on the free
        coordinates of the gauged box (`bounds(gauge=True)`); `to_params(0)` is `fix_gauge(base)`."""
        free = self.free_coordinates()
        flat, unravel = jax.flatten_util.ravel_pytree(self.fix_gauge(base))

        def to_params(delta):
            return unravel(flat.at[free].add(delta))

        return int(free.size), to_params

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

    # ---- estimation
    def jacobian(self, params, x: Float[Array, "d n"]) -> tuple[Float[Array, "n"], Float[Array, "n p"]]:
        """$f_G(x)$ and its Jacobian in the flat parameters (columns in `ravel_pytree(params)` order).
        Default: forward-mode autodiff through the whole model; families override it with per-atom blocks."""
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        fn = lambda t: self(unravel(t), x)
        return fn(flat), jax.jacfwd(fn)(flat)

    def random_start(self, key, scale: float = 3.0, dtype=None):
        """Uniform start in $[-s, s] \\cap \\Theta$ for every coordinate."""
        params, _ = uniform_start(key, self._template(dtype), scale)
        return self.project(params)

    def random_truth(self, key, scale: float = 3.0, dtype=None):
        """A random mixing measure in the truths' normalisation (A.3): `random_start` with the gauge pinned
        (`fix_gauge(pin=True)`). A family whose truth assumption pins more than its symmetries do overrides it.
        Distinctness (A.2) is not enforced: a draw with coinciding atoms is refused by `check_truth`."""
        return self.fix_gauge(self.random_start(key, scale, dtype), pin=True)

    def _template(self, dtype):
        template = self.zeros()
        if dtype is not None:
            template = jax.tree_util.tree_map(lambda a: a.astype(dtype), template)
        return template

    # ---- losses
    @classmethod
    def check_pair_shapes(cls, side: str, params) -> None:
        """Family-specific shape checks of one side of a (fitted, truth) pair (beyond `leading_axes`)."""

    @classmethod
    def required_options(cls, options: dict) -> dict:
        """The loss options these parameters need, checked (e.g. dense-to-sparse: is the router linear?)."""
        return {}

    @property
    def loss_options(self) -> dict:
        """Keyword options this model's parameters need in the class-level loss functions (e.g. router linearity)."""
        return {}

    def empty_cells(self, errors):
        """Empty Voronoi cells of a fit, from its `parameter_errors`."""
        return errors.num_empty_cells

    @classmethod
    def check_pair(cls, fitted: Any, truth: Any) -> None:
        """Raise `JaxMoEInputError` unless `fitted` and `truth` are this family's parameters with the same
        per-atom shapes (same d, router and expert structure); the numbers of atoms may differ."""
        names = cls.params_type.__name__
        require(isinstance(truth, cls.params_type), "truth", type(truth).__name__, f"must be a {names}")
        require(isinstance(fitted, cls.params_type), "fitted", type(fitted).__name__, f"must be a {names} like truth")
        for side, params in (("fitted", fitted), ("truth", truth)):
            _check_leading(side, params, cls.leading_axes)
            cls.check_pair_shapes(side, params)
        for name, lead in cls.leading_axes.items():
            f, t = getattr(fitted, name), getattr(truth, name)
            fs, ts = jax.tree_util.tree_structure(f), jax.tree_util.tree_structure(t)
            require(fs == ts, f"fitted.{name}", str(fs), f"must have truth.{name}'s structure {ts}")
            for (path, lf), lt in zip(jax.tree_util.tree_flatten_with_path(f)[0], jax.tree_util.tree_leaves(t)):
                sf, st = tuple(np.shape(lf)), tuple(np.shape(lt))
                require(sf[lead:] == st[lead:], f"fitted.{name}{jax.tree_util.keystr(path)}.shape", sf,
                        f"per-atom shape must equal truth's {st[lead:]} (same d / expert / router)")


def _check_leading(side: str, params, leading_axes: dict[str, int]) -> None:
    """Every leaf has its field's number of leading atom axes, and they agree across fields."""
    leads = {}
    for name, lead in leading_axes.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(params, name))[0]:
            shape = tuple(np.shape(leaf))
            where = f"{side}.{name}{jax.tree_util.keystr(path)}.shape"
            require(len(shape) >= lead, where, shape, f"must have {lead} leading atom axes")
            if lead:
                leads.setdefault(lead, (where, shape[:lead]))
                first_where, first = leads[lead]
                require(shape[:lead] == first[:lead], where, shape, f"leading atom axes must match {first_where} {first}")


def translation_tangents(params, intercept: str, slope: str | None) -> dict:
    """Tangents of the common translation of one softmax level: every atom's `intercept` by 1, or every atom's
    `slope[:, j]` by 1 (`slope` None: a non-linear router, whose parameters do not translate)."""
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    out = {f"translation {intercept}": zero._replace(**{intercept: jnp.ones_like(getattr(params, intercept))})}
    if slope is not None:
        s = getattr(zero, slope)
        for j in range(s.shape[-1]):
            out[f"translation {slope}[:, {j}]"] = zero._replace(**{slope: s.at[:, j].set(1.0)})
    return out


def prepare_pair(family, fitted, truth, translation: str, **options):
    """Check a (fitted, truth) pair of `family` and return `fitted` translated as the losses compare it."""
    family.check_pair(fitted, truth)
    check_translation(translation)
    return family.normalize_translation(fitted, truth, **options) if translation == "normalize" else fitted


def table1_rates(param_metrics, expert: str, theorem: str, slow_theorem: str, note: str = "") -> dict:
    """Per metric (theory slope or None, why) for a family whose linear-expert case is slow (THEORY.md §6):
    strongly identifiable experts give n^-1/2 (exactly fitted) and n^-1/4 (over-fitted cells)."""
    rates: dict[str, tuple[float | None, str]] = {"l2_error": (-0.5, "n^-1/2 up to log n (Proposition 1)")}
    over = ("overfit_error", "overfit_error_weighted")
    for k in list(param_metrics) + ["exact_error", *over]:
        if expert == "linear":
            rates[k] = (None, f"{SLOW} ({slow_theorem}: linear experts)")
        elif expert in STRONG_EXPERTS:
            slope = -0.25 if k in over else -0.5
            why = f"n^{'-1/4' if slope == -0.25 else '-1/2'} ({theorem}){note}"
            rates[k] = (slope, why + ("; unweighted: an atom whose mass tends to 0 dominates it"
                                      if k == "overfit_error" else ""))
        else:
            rates[k] = (None, f"unknown: the paper gives no rate for expert {expert!r}")
    rates["cell_mass"] = (None, "no rate: the lightest atom of an over-fitted cell may have a mass tending to 0")
    return rates
