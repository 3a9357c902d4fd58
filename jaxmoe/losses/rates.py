r"""Rate inference from losses measured over replicates at several sample sizes (NumPy: the data are small).

- `loglog_slope`: least-squares line $\log L(n) = a + b \log n$ through the mean (or median) loss per n,
  with a percentile bootstrap confidence interval for the slope b (replicates resampled within each n).
- `bootstrap_se`: the Monte Carlo standard error of a mean or quantile per n, by the bootstrap.
- `theil_sen_slope`, `local_slopes`, `window_slopes`: the slope robust to one bad size (median of pairwise
  slopes), between consecutive sizes, and as a function of the smallest n used (`moves_with_window` flags a
  slope whose confidence interval, once the smallest sizes are dropped, no longer overlaps the full range's).
- `compare_laws`: does a polynomial law $L = A n^{b}$ fit the curve better than a slower-than-polynomial
  one ($L = a + b/\log n$, or $L = A (\log n)^{c}$)? Reports the preferred law and by how much; `verdict`
  says `"none"` when $|\Delta\text{AIC}| < 2$.

**Failed fits.** A non-finite loss (NaN or $\pm\infty$, e.g. a diverged fit) is never dropped silently:
`nan_policy="raise"` raises; `nan_policy="omit"` (default) computes on the finite replicates only, reports
the counts per n in `num_nan` (NaN and infinities together) and emits a `RuntimeWarning` when any is omitted.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

from jaxmoe.validation import require, require_positive_int

STATISTICS = ("mean", "median", "q75", "q90")  # over the replicates at each n; q75 / q90: those quantiles
NAN_POLICIES = ("omit", "raise")
NO_PREFERENCE_AIC = 2.0  # |dAIC| below this: neither law preferred (Burnham & Anderson: "substantial support" for both)


class SlopeFit(NamedTuple):
    r"""Log-log fit $\log \bar L(n) = \text{intercept} + \text{slope} \cdot \log n$ ($\bar L$ = `statistic` per n).

    `ci_low`, `ci_high`: percentile bootstrap interval at `level`; `bootstrap_se`: std of the bootstrap slopes;
    `values`: $\bar L$ per n; `num_finite` / `num_nan`: replicates used / omitted (non-finite) per n;
    `r_squared` of the line in log-log space."""

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    level: float
    bootstrap_se: float
    statistic: str
    values: np.ndarray
    num_finite: np.ndarray
    num_nan: np.ndarray
    r_squared: float
    num_bootstrap: int


def _check_ns(ns, min_sizes: int = 3) -> np.ndarray:
    ns = np.asarray(ns, dtype=float)
    require(ns.ndim == 1, "ns.shape", ns.shape, "must be 1-D (one entry per sample size)")
    require(ns.size >= min_sizes, "ns", ns.tolist(),
            f"needs at least {min_sizes} sample sizes (a line through 2 points has no residual to judge it by)")
    require(bool(np.all(np.isfinite(ns)) and np.all(ns > 0)), "ns", ns.tolist(), "must be finite and > 0")
    require(np.unique(ns).size == ns.size, "ns", ns.tolist(), "must be distinct")
    return ns


def _ols(x: np.ndarray, y: np.ndarray) -> tuple:
    """Slopes and intercepts of least-squares lines y = a + b x along the last axis of y (x shared)."""
    xc = x - x.mean()
    b = (y - y.mean(axis=-1, keepdims=True)) @ xc / np.sum(xc ** 2)
    a = y.mean(axis=-1) - b * x.mean()
    return b, a


def _statistic(name: str):
    quantile = {"q75": 0.75, "q90": 0.9}.get(name)
    if quantile is not None:
        return lambda a, axis=None: np.quantile(a, quantile, axis=axis)
    return np.mean if name == "mean" else np.median


def loglog_slope(ns, losses, statistic: str = "mean", num_bootstrap: int = 1000, seed=0, level: float = 0.95,
                 nan_policy: str = "omit") -> SlopeFit:
    r"""Slope of $\log \bar L(n)$ against $\log n$ by least squares, with a bootstrap confidence interval.

    `ns`: the sample sizes (at least 3, distinct, > 0); `losses`: array (replicates, sizes) of losses > 0
    (non-finite entries: see the module docstring; pad unequal replicate counts with NaN and they are counted
    as omitted); `statistic`: "mean", "median", "q75" or "q90" (the 75% / 90% quantile) over the replicates
    at each n (an O_P rate is a statement about quantiles; the mean is the statistic a few far-off fits move
    most); `seed`: an int or a
    `numpy.random.Generator`.

    Bootstrap: B times, resample the finite replicates **within each n** with replacement, recompute the
    statistic per n and the least-squares slope; the interval is the $(1 \pm \text{level})/2$ percentiles
    of the B slopes. Needs at least 2 finite replicates at every n."""
    ns = _check_ns(ns)
    losses = np.asarray(losses, dtype=float)
    require(losses.ndim == 2 and losses.shape[1] == ns.size, "losses.shape", losses.shape,
            f"must be (replicates, sizes) = (r, {ns.size})")
    require(statistic in STATISTICS, "statistic", statistic, f"must be one of {list(STATISTICS)}")
    require(nan_policy in NAN_POLICIES, "nan_policy", nan_policy, f"must be one of {list(NAN_POLICIES)}")
    num_bootstrap = require_positive_int("num_bootstrap", num_bootstrap)
    require(isinstance(level, float) and 0 < level < 1, "level", level, "must be a float in (0, 1)")
    finite = np.isfinite(losses)
    num_nan = np.sum(~finite, axis=0)
    if nan_policy == "raise":
        require(not num_nan.any(), "losses", f"{int(num_nan.sum())} non-finite entries (per n: {num_nan.tolist()})",
                "must be finite (nan_policy='raise')")
    elif num_nan.any():
        warnings.warn(f"loglog_slope: omitted {int(num_nan.sum())} non-finite losses (per n: {num_nan.tolist()})",
                      RuntimeWarning, stacklevel=2)
    require(bool(np.all(losses[finite] > 0)), "losses", float(np.min(losses[finite])),
            "must be > 0 (the rate is read in log space)")
    num_finite = np.sum(finite, axis=0)
    require(bool(np.all(num_finite >= 2)), "losses", f"finite replicates per n: {num_finite.tolist()}",
            "needs at least 2 finite replicates at every n for the bootstrap")

    stat = _statistic(statistic)
    cols = [losses[finite[:, s], s] for s in range(ns.size)]
    values = np.array([stat(c) for c in cols])
    logn = np.log(ns)
    slope, intercept = _ols(logn, np.log(values))
    resid = np.log(values) - (intercept + slope * logn)
    tss = np.sum((np.log(values) - np.log(values).mean()) ** 2)
    r2 = float(1 - np.sum(resid ** 2) / tss) if tss > 0 else float("nan")

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    boot = np.empty((num_bootstrap, ns.size))
    for s, c in enumerate(cols):
        idx = rng.integers(0, c.size, size=(num_bootstrap, c.size))
        boot[:, s] = stat(c[idx], axis=1)
    boot_slopes, _ = _ols(logn, np.log(boot))
    lo, hi = np.quantile(boot_slopes, [(1 - level) / 2, (1 + level) / 2])
    return SlopeFit(float(slope), float(intercept), float(lo), float(hi), level, float(np.std(boot_slopes, ddof=1))
                    if num_bootstrap > 1 else 0.0, statistic, values, num_finite, num_nan, r2, num_bootstrap)


def bootstrap_se(values, statistic: str = "median", num_bootstrap: int = 1000, seed=0) -> np.ndarray:
    r"""Monte Carlo standard error of `statistic` (one of STATISTICS) of the finite entries of each row of
    `values` (rows: sample sizes; columns: replicates): the standard deviation of the statistic over
    `num_bootstrap` resamples of the row. NaN for a row with fewer than 2 finite entries. (For the median of
    normal data it is about $\sqrt{\pi/2}\,\mathrm{sd}/\sqrt{r}$; the bootstrap's estimate of a quantile's SE is
    consistent, but its relative error falls only like $r^{-1/4}$ (+21% at r = 400 in tests/rates_test.py).)"""
    require(statistic in STATISTICS, "statistic", statistic, f"must be one of {list(STATISTICS)}")
    num_bootstrap = require_positive_int("num_bootstrap", num_bootstrap)
    values = np.atleast_2d(np.asarray(values, dtype=float))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    stat, out = _statistic(statistic), np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        c = row[np.isfinite(row)]
        if c.size >= 2 and num_bootstrap > 1:
            out[i] = np.std(stat(c[rng.integers(0, c.size, size=(num_bootstrap, c.size))], axis=1), ddof=1)
    return out


def local_slopes(ns, values) -> np.ndarray:
    r"""Slopes $\Delta \log L / \Delta \log n$ between consecutive sizes of a curve `values` (one per n)."""
    ns = _check_ns(ns, min_sizes=2)
    logv = np.log(np.asarray(values, dtype=float))
    return np.diff(logv) / np.diff(np.log(ns))


def theil_sen_slope(ns, values) -> float:
    r"""Theil-Sen slope of $\log L$ on $\log n$: the median of the slopes between every pair of sizes; one bad
    size (a few far-off fits moving its statistic) moves it far less than least squares."""
    ns = _check_ns(ns, min_sizes=2)
    logn, logv = np.log(ns), np.log(np.asarray(values, dtype=float))
    i, j = np.triu_indices(ns.size, k=1)
    return float(np.median((logv[j] - logv[i]) / (logn[j] - logn[i])))


def theil_sen_fit(ns, losses, statistic: str = "median", num_bootstrap: int = 1000, seed=0,
                  level: float = 0.95) -> tuple[float, float, float]:
    r"""(slope, ci_low, ci_high): `theil_sen_slope` of the per-n `statistic` of `losses` (replicates, sizes),
    with the same within-n bootstrap as `loglog_slope` (finite replicates resampled at each n, the statistic
    and the Theil-Sen slope recomputed B times, the $(1 \pm \text{level})/2$ percentiles)."""
    ns = _check_ns(ns, min_sizes=2)
    losses = np.asarray(losses, dtype=float)
    require(losses.ndim == 2 and losses.shape[1] == ns.size, "losses.shape", losses.shape,
            f"must be (replicates, sizes) = (r, {ns.size})")
    require(statistic in STATISTICS, "statistic", statistic, f"must be one of {list(STATISTICS)}")
    num_bootstrap = require_positive_int("num_bootstrap", num_bootstrap)
    cols = [c[np.isfinite(c)] for c in losses.T]
    require(all(c.size >= 2 for c in cols), "losses", f"finite replicates per n: {[c.size for c in cols]}",
            "needs at least 2 finite replicates at every n for the bootstrap")
    stat = _statistic(statistic)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    boot = np.stack([stat(c[rng.integers(0, c.size, size=(num_bootstrap, c.size))], axis=1) for c in cols], axis=1)
    logn, i, j = np.log(ns), *np.triu_indices(ns.size, k=1)
    pair = (np.log(boot[:, j]) - np.log(boot[:, i])) / (logn[j] - logn[i])
    lo, hi = np.quantile(np.median(pair, axis=1), [(1 - level) / 2, (1 + level) / 2])
    return theil_sen_slope(ns, [stat(c) for c in cols]), float(lo), float(hi)


class WindowSlopes(NamedTuple):
    """`window_slopes`: per smallest size used, the fit over the sizes from it on, and the flag."""

    n_min: np.ndarray
    slope: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    statistic: str
    moves_with_window: bool


def window_slopes(ns, losses, statistic: str = "median", num_bootstrap: int = 1000, seed=0, level: float = 0.95,
                  min_sizes: int = 3) -> WindowSlopes:
    """`loglog_slope` over the sizes n >= n_min, for every n_min that leaves `min_sizes` sizes. The slope read
    off a rate curve depends on where the curve starts when the asymptotic regime starts late;
    `moves_with_window` is True when a window's confidence interval and the full range's do not overlap: the
    slope moved by more than both intervals allow (a window's own interval is wider: fewer sizes)."""
    ns = _check_ns(ns, min_sizes=min_sizes)
    losses = np.asarray(losses, dtype=float)
    order = np.argsort(ns)
    ns, losses = ns[order], losses[:, order]
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # omitted non-finite values: counted by the full fit
        for start in range(ns.size - min_sizes + 1):
            fits.append(loglog_slope(ns[start:], losses[:, start:], statistic, num_bootstrap, seed, level))
    slope = np.array([f.slope for f in fits])
    moves = any(f.ci_high < fits[0].ci_low or f.ci_low > fits[0].ci_high for f in fits[1:])
    return WindowSlopes(ns[:len(fits)], slope, np.array([f.ci_low for f in fits]), np.array([f.ci_high for f in fits]),
                        statistic, moves)


# ----------------------------------------------------------------------------------------------
# power law vs slower-than-polynomial laws


class LawFit(NamedTuple):
    r"""One law fitted to $(n, L)$: `params` (a, b), `rss` = $\sum (\log L - \log \hat L)^2$ (log space, inf if the
    law predicts $\hat L \le 0$ somewhere), `aic` $= m \log(\text{rss}/m) + 2 \cdot 2$ (m sizes, 2 parameters)."""

    name: str
    formula: str
    params: tuple
    rss: float
    aic: float


class LawComparison(NamedTuple):
    r"""`preferred`: the law with the smallest AIC among `laws` (all have 2 parameters, so this is the
    smallest log-space residual sum of squares). `slow_law`: the better of the slower-than-polynomial laws.
    `delta_aic` $= \text{AIC(slow law)} - \text{AIC(power)}$: > 0 favours the power law, < 0 the slow law;
    |delta_aic| > 10 is conventionally decisive. `relative_likelihood` $= e^{-|\Delta\text{AIC}|/2}$: how
    probable the losing law is relative to the winner. `rss_ratio` = rss(slow) / rss(power)."""

    preferred: str
    slow_law: str
    delta_aic: float
    relative_likelihood: float
    rss_ratio: float
    laws: dict

    @property
    def verdict(self) -> str:
        r"""`preferred`, or `"none"` when $|\Delta\text{AIC}| <$ `NO_PREFERENCE_AIC` (power vs the better slow
        law): a difference that small is a coin toss (relative likelihood > 0.37), not a preference."""
        return "none" if abs(self.delta_aic) < NO_PREFERENCE_AIC else self.preferred


def _law_result(name, formula, params, logl, pred):
    m = logl.size
    if np.all(pred > 0) and np.all(np.isfinite(pred)):
        rss = float(np.sum((logl - np.log(pred)) ** 2))
    else:
        rss = float("inf")
    aic = m * math.log(max(rss, 1e-300) / m) + 4 if np.isfinite(rss) else float("inf")
    return LawFit(name, formula, tuple(float(p) for p in params), rss, aic)


def _fit_log_law(ns, losses):
    r"""$L = a + b/\log n$ by least squares in log space: start from the relative-error linear fit
    (weights 1/L), then refine with `scipy.optimize.least_squares` (residuals $\log L - \log(a + b/\log n)$)."""
    u = 1.0 / np.log(ns)
    design = np.stack([np.ones_like(u), u], axis=1) / losses[:, None]
    start, *_ = np.linalg.lstsq(design, np.ones_like(losses), rcond=None)
    logl = np.log(losses)

    def resid(p):
        pred = p[0] + p[1] * u
        return logl - np.log(np.maximum(pred, 1e-300))

    try:
        from scipy.optimize import least_squares

        if np.all(start[0] + start[1] * u > 0):
            sol = least_squares(resid, start, method="lm" if ns.size > 2 else "trf")
            if np.all(sol.x[0] + sol.x[1] * u > 0) and np.sum(sol.fun ** 2) <= np.sum(resid(start) ** 2):
                start = sol.x
    except Exception:  # pragma: no cover - scipy failure keeps the linear start
        pass
    return start, start[0] + start[1] * u


def compare_laws(ns, mean_losses) -> LawComparison:
    r"""Fit and compare, by least squares in log space over the sizes `ns` (at least 3, each > 1):

    - `power`:   $\log L = a + b \log n$ (polynomial rate $n^{b}$);
    - `log`:     $L = a + b / \log n$ (slower than any polynomial; a is a floor);
    - `polylog`: $\log L = a + c \log\log n$, i.e. $L = e^a (\log n)^{c}$ (slower than any polynomial).

    All three have 2 parameters, so AIC differences are $m \log(\text{rss}_1/\text{rss}_2)$. Returns a
    `LawComparison` (which is preferred and by how much)."""
    ns = _check_ns(ns)
    losses = np.asarray(mean_losses, dtype=float)
    require(losses.shape == ns.shape, "mean_losses.shape", losses.shape, f"must be ({ns.size},) like ns")
    require(bool(np.all(np.isfinite(losses)) and np.all(losses > 0)), "mean_losses", losses.tolist(),
            "must be finite and > 0 (compared in log space)")
    require(bool(np.all(ns > 1)), "ns", ns.tolist(), "must be > 1 (the slow laws use 1/log n)")
    logl, logn = np.log(losses), np.log(ns)
    b, a = _ols(logn, logl)
    power = _law_result("power", "L = exp(a) * n^b", (a, b), logl, np.exp(a + b * logn))
    c, a2 = _ols(np.log(logn), logl)
    polylog = _law_result("polylog", "L = exp(a) * (log n)^b", (a2, c), logl, np.exp(a2 + c * np.log(logn)))
    p, pred = _fit_log_law(ns, losses)
    loglaw = _law_result("log", "L = a + b / log n", tuple(p), logl, pred)
    laws = {"power": power, "log": loglaw, "polylog": polylog}
    slow = min((loglaw, polylog), key=lambda f: f.aic)
    preferred = min(laws.values(), key=lambda f: f.aic).name
    delta = slow.aic - power.aic
    if np.isnan(delta):  # both infinite
        delta = 0.0
    rel = math.exp(-abs(delta) / 2) if np.isfinite(delta) else 0.0
    ratio = slow.rss / power.rss if power.rss > 0 else float("inf")
    return LawComparison(preferred, slow.name, float(delta), rel, float(ratio), laws)
