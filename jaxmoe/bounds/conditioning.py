r"""How well conditioned a truth is, and from which effective sample size $n/\sigma^2$ its asymptotic rates
can show (issue 14, item 6; the onset the upper-bound sweeps of issue 16 are compared with).

**Gauss-Newton / Fisher matrix at the truth.** For the exact-fitted model ($k = k^*$) at $G^*$, on the free
coordinates of the gauged box, $F = \int J(x)^\top J(x)\, d\mu(x)$ with $J = \partial f_G(x) / \partial\theta$
(quadrature): the per-sample Fisher information of the regression with $\sigma = 1$. Directions of exact
symmetries that the gauge leaves (`symmetry_tangents`: the linear router's scaling) are projected out and
counted in `symmetry_dimension`. `fisher_min` is the smallest eigenvalue left: the exact-fitted estimator's
worst-direction standard deviation is $\sigma / \sqrt{n\, \lambda_{\min}}$, so $1/\lambda_{\min}$ is the
$n/\sigma^2$ at which it is one parameter unit (`fisher_onset`), falling as $(n/\sigma^2)^{-1/2}$ from there.

**The profile constant.** From an inverse-bound profile (any k, usually over-fitted): `constant` =
$\omega(\varepsilon)/\varepsilon^m$ at the smallest resolvable $\varepsilon$ (m its local exponent), i.e. c in
$\omega \approx c\,\varepsilon^m$, and `asymptotic_eps`, the largest $\varepsilon$ below which every local
slope of $\log\omega$ on $\log\varepsilon$ is within `POLYNOMIAL_TOL` of m: where the power law holds.

**The predicted onset.** The two-point curve depends on $(n, \sigma)$ only through $n/\sigma^2$; `onset` is the
smallest $n/\sigma^2$ from which its maximiser $\varepsilon_n$ lies below `asymptotic_eps` (and below the grid's
largest $\varepsilon$, where it is clamped rather than a maximiser), so that the local
minimax rate is the asymptotic $n^{-1/(2m)}$ from there on (None when the profile never enters a power law).
With $\omega = c\,\varepsilon^m$ throughout, $\varepsilon_n^{2m} = \sigma^2 / (n c^2 m)$, so a small c (the
presets' c ~ 1e-6) pushes the onset out as $1/c^2$. The two are the same kind of statement: where the
data resolve the truth's local geometry.

`search_truths` screens random truths of a family by `fisher_min` (cheap, no optimisation) and optionally
ranks the best few by their profile's onset.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxmoe.bounds.profile import InverseBoundProfile, inverse_bound, local_exponent
from jaxmoe.bounds.quadrature import quadrature
from jaxmoe.bounds.two_point import two_point_curve
from jaxmoe.bounds.verdict import POLYNOMIAL_TOL
from jaxmoe.validation import JaxMoEInputError, require, require_positive_int

__all__ = ["Conditioning", "conditioning", "fisher_matrix", "profile_onset", "search_truths"]

ONSET_GRID = np.logspace(0, 40, 401)  # n / sigma^2 searched for the onset
NULL_RTOL = 1e-10  # symmetry tangents with a norm below this (relative) are no direction


class Conditioning(NamedTuple):
    """Module docstring: the exact-fitted Fisher spectrum and the profile's constant and onset."""

    fisher_eigenvalues: np.ndarray  # ascending, on the complement of the symmetry directions
    fisher_min: float
    fisher_condition: float
    fisher_onset: float  # 1 / fisher_min (n / sigma^2); inf when fisher_min <= 0
    symmetry_dimension: int
    exponent: float | None
    constant: float | None
    asymptotic_eps: float | None
    onset: float | None  # n / sigma^2 (None without a profile or a power-law range)


def fisher_matrix(setting, nodes: int = 96):
    """(F, S): the exact-fitted Gauss-Newton matrix at the truth on the gauged free coordinates (module
    docstring) and the exact symmetry tangents there, one row each, in the same coordinates."""
    with jax.enable_x64(True):
        model, truth = setting.model, setting.truth_params()
        base = model.near_truth_split(jax.random.PRNGKey(0), truth, setting.k_star, noise=0.0)
        p, to_params = model.offset_map(base)
        quad = quadrature(setting.inputs, setting.d, nodes)
        x, w = jnp.asarray(quad.x), jnp.asarray(quad.w)
        jac = jax.jacfwd(lambda d: model(to_params(d), x))(jnp.zeros(p))
        fisher = jac.T @ (w[:, None] * jac)
        g = to_params(jnp.zeros(p))
        free = model.free_coordinates()
        pinned = np.setdiff1d(np.arange(jax.flatten_util.ravel_pytree(g)[0].size), free)
        tangents = []
        for t in model.symmetry_tangents(g).values():
            flat = np.asarray(jax.flatten_util.ravel_pytree(t)[0])
            # a tangent that moves a pinned coordinate is what the gauge removes; one that does not is left
            if np.linalg.norm(flat[pinned]) <= NULL_RTOL * max(np.linalg.norm(flat), 1e-300):
                tangents.append(flat[free])
        return np.asarray(fisher), np.asarray(tangents).reshape(-1, p)


def _complement_eigenvalues(fisher: np.ndarray, tangents: np.ndarray) -> tuple[np.ndarray, int]:
    """Eigenvalues of F on the orthogonal complement of the tangents, and the tangents' dimension."""
    p = fisher.shape[0]
    if tangents.size:
        u, s, _ = np.linalg.svd(tangents.T, full_matrices=True)
        dim = int(np.sum(s > NULL_RTOL * max(1.0, s.max())))
    else:
        u, dim = np.eye(p), 0
    q = u[:, dim:]
    return np.linalg.eigvalsh(q.T @ fisher @ q), dim


def asymptotic_eps(profile: InverseBoundProfile, exponent: float) -> float | None:
    """The largest resolvable eps below which every local slope of log omega on log eps (between consecutive
    resolvable eps) is within POLYNOMIAL_TOL of `exponent`; None if the smallest pair is already off."""
    ok = profile.resolvable
    eps, omega = profile.eps[ok], profile.omega[ok]
    order = np.argsort(eps)
    le, lo = np.log(eps[order]), np.log(omega[order])
    if le.size < 2:
        return None
    slopes = np.diff(lo) / np.diff(le)
    off = np.flatnonzero(np.abs(slopes - exponent) > POLYNOMIAL_TOL)
    top = off[0] if off.size else slopes.size  # slopes[:top] all within the band
    return float(np.exp(le[top])) if top > 0 else None


def profile_onset(profile: InverseBoundProfile) -> tuple[float | None, float | None, float | None]:
    """(constant c, asymptotic_eps, onset n / sigma^2) of a profile (module docstring)."""
    m = local_exponent(profile)
    if m is None:
        return None, None, None
    ok = profile.resolvable
    small = np.argmin(np.where(ok, profile.eps, np.inf))
    c = float(profile.omega[small] / profile.eps[small] ** m)
    top = asymptotic_eps(profile, m)
    if top is None:
        return c, None, None
    curve = two_point_curve(profile, 1.0, ONSET_GRID)  # sigma = 1: n is n / sigma^2
    # inside the power-law range, and an interior maximiser: eps_n clamped at the grid's largest eps says
    # only that the grid ends there
    largest = np.max(profile.eps[ok])
    inside = (curve.eps_n <= top * (1 + 1e-12)) & (curve.eps_n < largest * (1 - 1e-9))
    # the first n / sigma^2 from which eps_n stays inside (eps_n falls with n, so this is where it enters)
    after = np.flatnonzero(~inside)
    start = 0 if after.size == 0 else after[-1] + 1
    return c, top, (float(curve.n[start]) if start < curve.n.size else None)


def conditioning(setting, profile: InverseBoundProfile | None = None, *, nodes: int = 96) -> Conditioning:
    """The conditioning diagnostic of `setting`'s truth (module docstring); the profile part needs `profile`
    (an `inverse_bound` of this setting: over-fitted for the over-fitted rates)."""
    require(profile is None or isinstance(profile, InverseBoundProfile), "profile", type(profile).__name__,
            "must be an InverseBoundProfile or None")
    fisher, tangents = fisher_matrix(setting, nodes)
    eig, dim = _complement_eigenvalues(fisher, tangents)
    lo, hi = float(eig[0]), float(eig[-1])
    c, top, onset = profile_onset(profile) if profile is not None else (None, None, None)
    return Conditioning(eig, lo, hi / lo if lo > 0 else np.inf, 1.0 / lo if lo > 0 else np.inf, dim,
                        None if profile is None else local_exponent(profile), c, top, onset)


def search_truths(setting, key, candidates: int = 64, scale: float = 3.0, keep: int = 4, refine: dict | None = None):
    """Random truths of `setting`'s family (`model.random_truth`: uniform in [-scale, scale] ∩ Θ in A.3's
    normalisation, `candidates` of them) ranked by the exact-fitted `fisher_min` (largest first); the best `keep`
    are returned as [(setting, Conditioning)]. A draw that is not a valid truth (atoms not distinct) is
    skipped, and a family none of whose draws is valid is refused naming the first reason.
    With `refine` (keyword arguments of `inverse_bound`, e.g. {"loss": "d1", "eps": ..., "starts": 4}) each kept
    truth also gets its over-fitted profile, and they are re-ranked by predicted onset (smallest first)."""
    candidates = require_positive_int("candidates", candidates)
    keep = require_positive_int("keep", keep)
    require(np.isfinite(scale) and scale > 0, "scale", scale, "must be finite and > 0")
    with jax.enable_x64(True):
        keys = jax.random.split(key, candidates)
        truths = [setting.model.random_truth(k, scale, jnp.float64) for k in keys]
    scored, first_refusal = [], None
    for truth in truths:
        try:  # a draw with coinciding atoms is no truth (Setting checks it): skipped
            cand = setting.replace(truth=jax.tree_util.tree_map(np.asarray, truth), name=f"{setting.name}-search")
        except JaxMoEInputError as err:
            first_refusal = first_refusal or str(err)
            continue
        eig, _ = _complement_eigenvalues(*fisher_matrix(cand))
        scored.append((float(eig[0]), cand))
    require(len(scored) > 0, "candidates", candidates, f"gave no valid truth of this family (first refusal: "
            f"{first_refusal})")
    scored.sort(key=lambda t: -t[0])
    out = []
    for _, cand in scored[:keep]:
        prof = inverse_bound(cand, **refine) if refine else None
        out.append((cand, conditioning(cand, prof)))
    if refine:
        out.sort(key=lambda t: np.inf if t[1].onset is None else t[1].onset)
    return out
