r"""A floor-free cross-check of an inverse-bound profile by Taylor-mode autodiff (`jax.experimental.jet`).

The profile's $\omega = \|f_G - f^*\|$ is a difference of two float64 evaluations of sums over atoms, so it
cannot resolve values below about $10^{-16}\|f^*\|$ (`InverseBoundProfile.floor`). Each kept $G$ is
$G_0 + \delta$ with $G_0$ a split truth ($f_{G_0} = f^*$ exactly: the extra atoms sit on a true atom, weights
split). Along the line $t \mapsto G_0 + t\delta$,
$$f_{G_0 + \delta} - f^* = \sum_{j \ge 1} \frac{1}{j!} \frac{d^j}{dt^j} f_{G_0 + t\delta}\Big|_{t=0},$$
and `jet` computes the derivatives in one pass, each with a rounding error relative to its own size, not to
$\|f^*\|$: no term is a difference of two $O(1)$ numbers. Truncated after `order` terms, the sum is
$\omega_{\text{Taylor}}$. Its round-off (`taylor_floor`) is measured as the float64 floor is: the same series for an
exact symmetric image of $G_0$ and $G$ (moved by 0.25 along every exact symmetry of the family) represents the same
function, so the two sums differ by round-off only; a family without symmetries gets $16u$ times the largest
single-coordinate first-order term $\|\partial_{\theta_i} f\,\delta_i\|$ (what cancels inside the first term).
The truncation is measured by the last term (`tail`: its norm over the sum's; the check is valid where it is
small).

What it tells: where both resolve $\omega$ they must agree (`relative_difference`, a bug check of both). At an
$\varepsilon$ at the float64 floor a Taylor-resolvable value is the real $\|f_G - f_{G_0}\|$ of the $G$ the optimiser
kept, below what float64 differences can see: how closely that $G$ cancels its first-order change. It is not a
proof that $\omega = 0$ there (G's own coordinates are float64 numbers, and an optimiser on the float64 objective
stops at the floor), nor does it see the rounding of $G_0$ itself ($f_{G_0} = f^*$ in exact arithmetic only).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jax.experimental import jet

from jaxmoe.bounds.profile import InverseBoundProfile, default_nodes, nearest_split, split_truths
from jaxmoe.bounds.quadrature import quadrature
from jaxmoe.validation import require, require_positive_int

__all__ = ["TAIL_TOL", "TaylorCheck", "taylor_check"]

TAIL_TOL = 1e-3  # the last Taylor term over the sum: above it the series has not converged at this delta


class TaylorCheck(NamedTuple):
    """Per eps of the profile: omega by the Taylor series, its round-off estimate, the truncation ratio `tail`,
    `converged` (tail <= `TAIL_TOL`), `resolvable` (converged and omega_taylor >= 100 x its round-off), the
    relative difference to the float64 omega where both are resolvable (NaN elsewhere), and the profile's
    `at_float64_floor`."""

    eps: np.ndarray
    omega: np.ndarray
    omega_taylor: np.ndarray
    taylor_floor: np.ndarray
    tail: np.ndarray
    converged: np.ndarray
    resolvable: np.ndarray
    relative_difference: np.ndarray
    at_float64_floor: np.ndarray
    order: int

    @property
    def below_float64_floor(self) -> np.ndarray:
        """eps at the float64 floor whose kept G has a Taylor-resolvable omega (module docstring)."""
        return self.resolvable & self.at_float64_floor


def taylor_check(setting, profile: InverseBoundProfile, order: int = 8, nodes: int | None = None) -> TaylorCheck:
    """The cross-check (module docstring) of every eps of `profile` (an `inverse_bound` profile with its measures)."""
    require(isinstance(profile, InverseBoundProfile) and profile.measures is not None, "profile",
            type(profile).__name__, "must be an inverse_bound profile with its measures")
    order = require_positive_int("order", order, 2)
    nodes = default_nodes(setting.d) if nodes is None else require_positive_int("nodes", nodes, 2)
    with jax.enable_x64(True):
        model, truth = setting.fitted_model(profile.k), setting.truth_params()
        quad = quadrature(setting.inputs, setting.d, nodes)
        qx, qw = jnp.asarray(quad.x), jnp.asarray(quad.w)
        bases, unravel = split_truths(model, truth, setting.k_star)
        flat = jax.vmap(lambda g: jax.flatten_util.ravel_pytree(g)[0])(
            jax.tree_util.tree_map(jnp.asarray, profile.measures))
        if profile.difference == "path" and profile.measures_low is not None:  # G = measures + measures_low
            low = jnp.asarray(profile.measures_low)
            series = jax.jit(jax.vmap(lambda g, lo: _series(model, unravel, bases, g, qx, order, lo)))(flat, low)
        else:  # the rounded G is the measure
            series = jax.jit(jax.vmap(lambda g: _series(model, unravel, bases, g, qx, order)))(flat)
        omega_t, floor_t, tail = (np.asarray(a) for a in jax.jit(jax.vmap(lambda *a: _norms(*a, qw)))(*series))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(omega_t - profile.omega) / profile.omega
        converged = tail <= TAIL_TOL
        resolvable = converged & (omega_t >= 100 * floor_t)
    return TaylorCheck(profile.eps, profile.omega, omega_t, floor_t, tail, converged, resolvable,
                       np.where(profile.resolvable & resolvable, rel, np.nan), profile.at_floor, order)


def _terms(f, base, delta, order: int):
    """d^j/dt^j f(base + t delta) / j!, j = 1..order (rows), at the nodes."""
    _, terms = jet.jet(f, (base,), ([delta] + [jnp.zeros_like(delta)] * (order - 1),))
    fact = jnp.cumprod(jnp.arange(1, order + 1, dtype=delta.dtype))
    return jnp.stack(terms) / fact[:, None]


def _series(model, unravel, bases, g, qx, order: int, low=None):
    """From the nearest split truth G0: the Taylor terms of f along G0 + t (G - G0) (G = g + low, the profile's
    `measures_low`: its part below float64's grid, where given), and the sum of the same
    series for an exact symmetric image (G0 and G both moved by 0.25 along every exact symmetry, as the float64
    floor is measured), whose difference from the first sum is pure round-off; with no symmetry, the
    single-coordinate first-order terms (16 u times the largest is the round-off estimate)."""
    base = nearest_split(bases, g)
    f = lambda v: model(unravel(v), qx)  # noqa: E731
    delta = g - base if low is None else (g - base) + low
    terms = _terms(f, base, delta, order)
    tangents = model.symmetry_tangents(unravel(g))
    if not tangents:
        lin = jax.vmap(lambda e: jax.jvp(f, (base,), (e * delta,))[1])(jnp.eye(delta.size, dtype=delta.dtype))
        return terms, lin, jnp.zeros(())
    move = lambda v: v + 0.25 * sum(  # noqa: E731
        jax.flatten_util.ravel_pytree(t)[0] for t in model.symmetry_tangents(unravel(v)).values())
    twin_base, twin = move(base), move(g)
    twin_delta = twin - twin_base if low is None else (twin - twin_base) + low
    return terms, jnp.sum(_terms(f, twin_base, twin_delta, order), axis=0)[None], jnp.ones(())


def _norms(terms, other, twin, qw):
    total = jnp.sum(terms, axis=0)
    omega = jnp.sqrt(jnp.sum(qw * total ** 2))
    last = jnp.sqrt(jnp.sum(qw * terms[-1] ** 2))
    eps = jnp.finfo(total.dtype).eps
    by_twin = jnp.sqrt(2.0 * jnp.sum(qw * (total - other[0]) ** 2)) + eps * omega
    by_terms = 16 * eps * jnp.max(jnp.sqrt(jnp.sum(qw * other ** 2, axis=1)))
    return omega, jnp.where(twin > 0, by_twin, by_terms), last / jnp.maximum(omega, 1e-300)
