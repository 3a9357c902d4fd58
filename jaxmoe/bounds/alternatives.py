r"""Local alternatives by Monte Carlo: the least-squares estimator's risk over the two-point pair
$\{G^*, G_n\}$ against the two-point lower bound $LB(n)$ (issue 14, item 4).

**The pair.** For each n, $G_n$ is the measure of the inverse-bound profile (`InverseBoundProfile.measures`:
real k-atom measures in $\Theta$, atoms nearly merged) that maximises the pair's own bound
$$LB_n(G) = \frac{\varepsilon_G}{4} \exp\!\Big(-\frac{n\,\omega_G^2}{2\sigma^2}\Big),\qquad
\varepsilon_G = D(G, G^*),\ \omega_G = \|f_G - f^*\|_{L^2(\mu)}$$
($\omega_G$ recomputed on a rule twice as fine as the profile's, plus the profile's float64 floor there, so
that it bounds the true $\omega_G$ from above and the bound stays valid at eps whose $\omega$ is round-off:
those pairs are the strongest, $LB_n \approx \varepsilon/4$): the profile point nearest the two-point
curve's $\varepsilon_n$, without its interpolation.

**The loss, defined for both references.** $D(\cdot, G)$ with a k-atom reference is not the paper's loss
(asymmetric; a k-atom reference leaves a Voronoi cell empty), so the risk is measured in
$$L(\hat G, G) = |D(\hat G, G^*) - D(G, G^*)|,$$
which needs only the paper's $D(\cdot, G^*)$: $L(\hat G, G^*) = D(\hat G, G^*)$, and
$L(\hat G, G^*) + L(\hat G, G_n) \ge \varepsilon_{G_n}$ for every $\hat G$ (the triangle inequality on the real
line), so Le Cam's argument holds with constant 1 and Bretagnolle-Huber gives, **for any estimator**,
$$\max\big(\mathbb E_{G^*} L(\hat G, G^*),\ \mathbb E_{G_n} L(\hat G, G_n)\big) \ge LB_n(G_n)$$
exactly (Gaussian noise, random design: $\mathrm{KL} = n\,\omega_G^2 / (2\sigma^2)$). A Monte Carlo risk
below it (both upper 3-SE limits below the bound) is a bug: `below_bound`.

**The estimator.** The data under $G_n$ are drawn from it (`Setting.data_truth`) with the same keys as under
$G^*$ (common random numbers); the starts and the fitted k are those of $G^*$'s fits, so the estimator is the
same function of the data under both (starts drawn at $G_n$ would tell it the answer). Each distinct $G_n$ is
one `fit_curve` call over the sizes it serves (its program is compiled once: the data measure is part of it).
Converged and box-face fractions are reported per hypothesis; no fit is dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxmoe.bounds.profile import InverseBoundProfile, loss_function
from jaxmoe.bounds.quadrature import quadrature
from jaxmoe.estimation import FitOptions, fit_curve
from jaxmoe.validation import require, require_positive_int

__all__ = ["LocalAlternatives", "local_alternatives", "pair_bounds"]

SE_MULTIPLE = 3.0  # a risk is below the bound only if risk + 3 SE is, for both hypotheses


class LocalAlternatives(NamedTuple):
    """Per n (all arrays over `n`): the alternative's profile index `alternative`, `eps` = D(G_n, G*), `omega`
    = ||f_{G_n} - f*||, the pair's exact bound `lower_bound`; risks (means over replicates, `*_se` their Monte
    Carlo standard errors, `median_*` the medians) under G* (`risk_null`: D(G, G*)) and under G_n
    (`risk_alt`: |D(G, G*) - eps|), the pair risk `risk` = max of the two, `ratio` = risk / lower_bound,
    `below_bound` (a bug check); `converged_*` and `boundary_*` fractions per hypothesis; `loss_null` and
    `loss_alt` (n, replicates) the per-fit D(G, G*)."""

    n: np.ndarray
    alternative: np.ndarray
    eps: np.ndarray
    omega: np.ndarray
    lower_bound: np.ndarray
    risk_null: np.ndarray
    risk_null_se: np.ndarray
    risk_alt: np.ndarray
    risk_alt_se: np.ndarray
    median_null: np.ndarray
    median_alt: np.ndarray
    risk: np.ndarray
    ratio: np.ndarray
    below_bound: np.ndarray
    converged_null: np.ndarray
    converged_alt: np.ndarray
    boundary_null: np.ndarray
    boundary_alt: np.ndarray
    loss_null: np.ndarray
    loss_alt: np.ndarray
    sigma: float
    loss: str
    r: float | None


def pair_bounds(setting, profile: InverseBoundProfile, sizes, nodes: int = 192):
    """(index, eps, omega, bound) per n: the profile measure maximising LB_n(G) (module docstring) among the
    kept ones (resolvable or at the floor), with its D and its omega (on a `nodes`-point rule, plus the floor)."""
    require(profile.measures is not None, "profile", "no measures", "must come from inverse_bound (it keeps them)")
    sizes = np.asarray(sizes, dtype=float).reshape(-1)
    ok = (profile.resolvable | profile.at_floor) & np.isfinite(profile.measure_loss)
    require(bool(ok.any()), "profile", "no kept eps", "needs at least one eps with a kept measure")
    omega = _omegas(setting, profile, nodes) + profile.floor
    eps = profile.measure_loss
    log_lb = np.where(ok[None, :], np.log(np.where(ok, eps, 1.0) / 4.0)[None, :]
                      - sizes[:, None] * np.where(ok, omega, 0.0)[None, :] ** 2 / (2 * setting.sigma ** 2), -np.inf)
    index = np.argmax(log_lb, axis=1)
    return index, eps[index], omega[index], np.exp(log_lb[np.arange(sizes.size), index])


def _omegas(setting, profile, nodes: int) -> np.ndarray:
    """||f_G - f*||_{L2(mu)} of every profile measure (NaN where there is none)."""
    with jax.enable_x64(True):
        quad = quadrature(setting.inputs, setting.d, nodes)
        x = jax.numpy.asarray(quad.x)
        model, truth = setting.fitted_model(profile.k), setting.truth_params()
        fstar = jax.jit(setting.model)(truth, x)  # jitted: op by op, each operation compiles on its own
        sq = jax.jit(jax.vmap(lambda g: jax.numpy.sum(quad.w * (model(g, x) - fstar) ** 2)))(profile.measures)
    return np.sqrt(np.asarray(sq))


def local_alternatives(setting, profile: InverseBoundProfile, sizes, replicates: int, seed: int = 0, *,
                       options: FitOptions | None = None, nodes: int = 192) -> LocalAlternatives:
    """The estimator's risk over {G*, G_n} for each n in `sizes` against the pair's bound (module docstring):
    `replicates` fits per n and hypothesis with `options` (default `FitOptions()`, k from the profile)."""
    replicates = require_positive_int("replicates", replicates)
    require(options is None or isinstance(options, FitOptions), "options", options, "must be a FitOptions or None")
    sizes = np.asarray(sizes).reshape(-1)
    require(sizes.size >= 1 and bool(np.all(sizes == np.round(sizes)) and np.all(sizes >= 2)), "sizes",
            sizes.tolist(), "must be integers >= 2")
    sizes = sizes.astype(int)
    k = profile.k
    options = (FitOptions() if options is None else options).replace(k=k)
    index, eps, omega, bound = pair_bounds(setting, profile, sizes, nodes)
    model_hat = setting.fitted_model(k)
    with jax.enable_x64(True):
        D = jax.jit(jax.vmap(loss_function(model_hat, setting.truth_params(), profile.loss, profile.r,
                                              bool(profile.divided_out))))
    null = _fit_losses(setting, sizes, replicates, seed, options, D, model_hat)
    alt = [None] * sizes.size
    for j in np.unique(index):
        serve = np.flatnonzero(index == j)
        measure = jax.tree_util.tree_map(lambda a: a[j], profile.measures)
        # k_fit = the profile's k: the measure's atoms (a profile may be made with k other than setting.k_fit)
        alt_setting = setting.replace(data_truth=measure, k_fit=k)
        got = _fit_losses(alt_setting, sizes[serve], replicates, seed, options, D, model_hat)
        for pos, i in enumerate(serve):
            alt[i] = tuple(a[pos] for a in got)
    alt = tuple(np.stack(a) for a in zip(*alt))
    return _assemble(sizes, index, eps, omega, bound, null, alt, setting.sigma, profile)


def _fit_losses(setting, sizes, replicates, seed, options, D, model_hat):
    """(D(G, G*), converged, on the box face), each (sizes, replicates), of one fit_curve call."""
    fit = fit_curve(setting, sizes.tolist(), replicates, seed, options=options)
    with jax.enable_x64(True):
        flat = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64).reshape((-1,) + a.shape[2:]), fit.params)
        losses = np.asarray(D(flat)).reshape(fit.objective.shape)
    return losses, np.asarray(fit.converged), np.asarray(model_hat.on_boundary(fit.params))


def _mean_se(a):
    """Mean over the last axis and its Monte Carlo standard error (NaN with one replicate)."""
    if a.shape[-1] < 2:
        return np.mean(a, axis=-1), np.full(a.shape[:-1], np.nan)
    return np.mean(a, axis=-1), np.std(a, axis=-1, ddof=1) / np.sqrt(a.shape[-1])


def _assemble(sizes, index, eps, omega, bound, null, alt, sigma, profile) -> LocalAlternatives:
    loss_null, conv_null, face_null = null
    loss_alt, conv_alt, face_alt = alt
    l_alt = np.abs(loss_alt - eps[:, None])
    r0, se0 = _mean_se(loss_null)
    r1, se1 = _mean_se(l_alt)
    risk = np.maximum(r0, r1)
    below = (r0 + SE_MULTIPLE * np.nan_to_num(se0) < bound) & (r1 + SE_MULTIPLE * np.nan_to_num(se1) < bound)
    return LocalAlternatives(
        sizes, index, eps, omega, bound, r0, se0, r1, se1, np.median(loss_null, axis=-1), np.median(l_alt, axis=-1),
        risk, risk / bound, below, conv_null.mean(-1), conv_alt.mean(-1), face_null.mean(-1), face_alt.mean(-1),
        loss_null, loss_alt, float(sigma), profile.loss, profile.r)
