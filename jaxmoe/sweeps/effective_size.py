r"""Effective sample size: a grid's metrics against $n / \sigma^2$, the collapse test and the onset of a rate.

Near the truth the least-squares objective of $n$ samples at noise $\sigma$ is, to leading order, a quadratic
in the parameters plus a Gaussian linear term of variance $\propto \sigma^2 / n$; its minimiser, and so every
metric of it (Voronoi losses, parameter and regression errors, all in units of $\theta$ or $f$), depends on
$(\sigma, n)$ through $x = n / \sigma^2$ only. Small $\sigma$ thus reaches "large n" cheaply, and curves drawn
against $x$ at several noise levels should **collapse** onto one; where they do not, the finite-sample
regime (a fit far from the truth, the box face, the stopping rules) is not yet the asymptotic one.

A grid with a `data.sigma` factor (`jaxmoe.sweeps.grid`) is read in **groups**: cells that agree on every
other factor, one curve per noise level. Per group and metric:

- **Collapse test.** Two cells $a, b$ (noise $\sigma_a > \sigma_b$) and sizes with
  $n_a / \sigma_a^2 = n_b / \sigma_b^2$ within `MATCH_RTOL` (2%: sizes half a decade apart are rounded to
  integers) are a matched point. Statistic: $\log \mathrm{med}_a - \log \mathrm{med}_b$, the log-ratio of the
  medians over replicates (an O_P rate is about quantiles, and the median is the quantile few far-off fits
  move). CI: percentile bootstrap that resamples replicate indices **jointly** in the two cells (fit $(n, r)$'s key
  depends on $n$, so the two are independent draws, and joint resampling is valid either way; with unequal
  replicate counts, independently). The group's metric **collapses** if every matched point's CI at the
  Bonferroni level $1 - (1 - \text{level}) / m$ ($m$ matched points) contains 0: a family-wise test at
  `level`, valid however the points depend on each other through shared cells.
- **Onset.** The pooled curve: the replicates of all cells at the same $x$ (within `MATCH_RTOL`) together,
  one point per distinct $x$. For every smallest $x_j$ that leaves 3 points, the slope of the median on
  $\log x$ over $x \ge x_j$ (`rates.window_slopes`, bootstrap CI at `level`). A window is **in the band**
  when its slope is within `SLOPE_BAND` (0.1, the same tolerance as every other polynomial verdict of
  jaxmoe, declared before any run) of the theory's slope and its CI contains the theory's slope. The
  **onset** is the smallest $x_j$ from which every window is in the band; `None` (not reached by the grid's
  largest $x$) when the last one is not. A metric without a theory slope has no onset.
  Next to it the report carries a **predicted** onset when given (`predicted_onsets`: the lower-bound lab's
  `bounds.conditioning` of the same truth and fitted k, in units of $n / \sigma^2$).

Every cell's converged and on-the-box-face fractions are reported with the curves: a collapse of fits that
did not converge is not evidence.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from jaxmoe.losses.rates import window_slopes
from jaxmoe.sweeps.report import theory_rates
from jaxmoe.sweeps.figures import save_figure
from jaxmoe.validation import JaxMoEInputError, require

__all__ = ["MATCH_RTOL", "SIGMA_FACTOR", "SLOPE_BAND", "CollapsePoint", "collapse_points", "effective_size_report",
           "band_onset", "format_effective_size", "plot_effective_size", "pooled_curve", "rate_onset", "sigma_groups", "varies_sigma"]

SIGMA_FACTOR = "data.sigma"
MATCH_RTOL = 0.02
SLOPE_BAND = 0.1


class CollapsePoint(NamedTuple):
    """One matched point of two noise levels: x = n / sigma^2 of each, the log-ratio of medians and its CI."""

    sigma_a: float
    n_a: int
    sigma_b: float
    n_b: int
    x: float
    log_ratio: float
    ci_low: float
    ci_high: float

    @property
    def collapses(self) -> bool:
        return bool(self.ci_low <= 0.0 <= self.ci_high)


def varies_sigma(grid) -> bool:
    """Whether a grid has the `data.sigma` factor with two or more levels > 0 (an effective-sample-size
    report; n / sigma^2 is undefined at sigma = 0, so such cells are left out of it)."""
    return SIGMA_FACTOR in grid.factors and sum(float(s) > 0 for s in grid.factors[SIGMA_FACTOR]) >= 2


def sigma_groups(gres) -> list[tuple[dict, list[tuple[float, object]]]]:
    """The grid's cells in groups that agree on every factor but `data.sigma`: per group (its other factors'
    columns, [(sigma, SweepResults)] by decreasing sigma, started cells with sigma > 0 only). The grid must
    vary sigma (`varies_sigma`)."""
    grid = gres.grid
    require(varies_sigma(grid), "grid", grid.name,
            f"needs a factor {SIGMA_FACTOR!r} with two or more levels > 0 for an effective-sample-size report")
    groups: dict = {}
    for cell, res in zip(grid.cells, gres.cells):
        columns = grid.columns(cell)
        others = {k: v for k, v in columns.items() if k != SIGMA_FACTOR}
        key = tuple(sorted((k, repr(v)) for k, v in others.items()))
        groups.setdefault(key, (others, []))
        if res is not None and res.config.spec["data"]["sigma"] > 0:  # n / sigma^2 is undefined at sigma = 0
            groups[key][1].append((float(res.config.spec["data"]["sigma"]), res))
    return [(others, sorted(cells, key=lambda c: -c[0])) for others, cells in groups.values()]


def _medians_ratio(a: np.ndarray, b: np.ndarray, num_bootstrap: int, level: float, rng) -> tuple:
    """log median(a) - log median(b) over the finite replicates and its percentile bootstrap CI."""
    fa, fb = np.isfinite(a) & (a > 0), np.isfinite(b) & (b > 0)
    stat = float(np.log(np.median(a[fa])) - np.log(np.median(b[fb])))
    ia = rng.integers(0, int(fa.sum()), size=(num_bootstrap, int(fa.sum())))
    joint = a.size == b.size and np.array_equal(fa, fb)  # the same replicate indices: resample them jointly
    ib = ia if joint else rng.integers(0, int(fb.sum()), size=(num_bootstrap, int(fb.sum())))
    boot = np.log(np.median(a[fa][ia], axis=1)) - np.log(np.median(b[fb][ib], axis=1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return stat, float(lo), float(hi)


def _matches(cells: list, metric: str):
    """(sigma_a, n_a, a, sigma_b, n_b, b) per matched point: equal n / sigma^2 within MATCH_RTOL, a and b the
    metric's replicates, both with at least 2 finite positive values."""
    for i, (sa, ra) in enumerate(cells):
        for sb, rb in cells[i + 1:]:
            if metric not in ra.metrics or metric not in rb.metrics:
                continue
            for ja, na in enumerate(ra.sizes):
                for jb, nb in enumerate(rb.sizes):
                    a, b = ra.metrics[metric][ja], rb.metrics[metric][jb]
                    usable = min(np.sum(np.isfinite(a) & (a > 0)), np.sum(np.isfinite(b) & (b > 0))) >= 2
                    if abs((na / sa ** 2) / (nb / sb ** 2) - 1.0) <= MATCH_RTOL and usable:
                        yield sa, int(na), a, sb, int(nb), b


def collapse_points(cells: list, metric: str, num_bootstrap: int = 1000, level: float = 0.95,
                    seed: int = 0) -> list[CollapsePoint]:
    """Every matched point (module docstring) of `cells` ([(sigma, SweepResults)], by decreasing sigma) for
    `metric`, with its CI at `level` (pass the Bonferroni level for a family-wise test). A point with fewer than
    2 finite positive replicates on either side is left out."""
    return _collapse(list(_matches(cells, metric)), num_bootstrap, level, seed)


def _collapse(matches: list, num_bootstrap: int, level: float, seed: int) -> list[CollapsePoint]:
    rng = np.random.default_rng(seed)
    out = []
    for sa, na, a, sb, nb, b in matches:
        stat, lo, hi = _medians_ratio(a, b, num_bootstrap, level, rng)
        out.append(CollapsePoint(sa, na, sb, nb, float(np.sqrt(na / sa ** 2 * nb / sb ** 2)), stat, lo, hi))
    return out


def pooled_curve(cells: list, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct x = n / sigma^2 (merged within MATCH_RTOL, geometric mean) and the replicates of all cells at
    each, as (replicates, points) padded with NaN."""
    points = sorted(((n / s ** 2, res.metrics[metric][j]) for s, res in cells if metric in res.metrics
                     for j, n in enumerate(res.sizes)), key=lambda point: point[0])
    xs, cols = [], []
    for x, values in points:
        if xs and x / xs[-1][-1] - 1.0 <= MATCH_RTOL:
            xs[-1].append(x)
            cols[-1].append(values)
        else:
            xs.append([x])
            cols.append([values])
    merged = [np.concatenate(c) for c in cols]
    losses = np.full((max((m.size for m in merged), default=0), len(merged)), np.nan)
    for j, m in enumerate(merged):
        losses[:m.size, j] = np.where(m > 0, m, np.nan)
    return np.array([np.exp(np.mean(np.log(x))) for x in xs]), losses


def band_onset(slope, ci_low, ci_high, theory_slope: float) -> tuple[int | None, np.ndarray]:
    """(index of the first window from which every later window is in the band, or None; the in-band flags) for
    window slopes ordered by their smallest size: in the band when |slope - theory| <= `SLOPE_BAND` and the
    window's CI contains the theory's slope."""
    slope, ci_low, ci_high = (np.asarray(a, float) for a in (slope, ci_low, ci_high))
    in_band = (np.abs(slope - theory_slope) <= SLOPE_BAND) & (ci_low <= theory_slope) & (theory_slope <= ci_high)
    tail = np.flatnonzero(~in_band)
    start = 0 if tail.size == 0 else int(tail[-1]) + 1
    return (start if start < slope.size else None), in_band


def rate_onset(x: np.ndarray, losses: np.ndarray, theory_slope: float, num_bootstrap: int = 1000,
               level: float = 0.95, seed: int = 0) -> dict:
    """The onset of `theory_slope` on a pooled curve (module docstring): the windows (smallest x, slope, CI,
    in band) and the onset x (None: not reached)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = window_slopes(x, losses, "median", num_bootstrap, seed, level)
    start, in_band = band_onset(w.slope, w.ci_low, w.ci_high, theory_slope)
    onset = float(w.n_min[start]) if start is not None else None
    windows = [{"x_min": float(a), "slope": float(b), "ci": [float(lo), float(hi)], "in_band": bool(ok)}
               for a, b, lo, hi, ok in zip(w.n_min, w.slope, w.ci_low, w.ci_high, in_band)]
    return {"onset": onset, "x_max": float(np.max(x)), "windows": windows}


def _fractions(cells: list) -> list[dict]:
    return [{"sigma": s, "sizes": res.sizes.tolist(), "converged": np.mean(res.fits["converged"], axis=1).tolist(),
             "on_boundary": np.mean(res.fits["on_boundary"], axis=1).tolist()} for s, res in cells]


def _metric_entry(cells, metric, theory, num_bootstrap, level, seed) -> dict:
    x, losses = pooled_curve(cells, metric)
    matches = list(_matches(cells, metric))
    adjusted = 1.0 - (1.0 - level) / max(len(matches), 1)  # Bonferroni over the matched points
    points = _collapse(matches, num_bootstrap, adjusted, seed)
    failed = [p for p in points if not p.collapses]
    entry = {"theory_slope": theory[0], "x": x.tolist(),
             "median": [float(np.nanmedian(c)) if np.isfinite(c).any() else None for c in losses.T],
             "collapse": {"points": [{**p._asdict(), "collapses": p.collapses} for p in points], "level": level,
                          "bonferroni_level": adjusted, "collapses": not failed if points else None,
                          "worst": max(points, key=lambda p: abs(p.log_ratio))._asdict() if points else None},
             "onset": None, "note": None}
    if theory[0] is not None:
        try:
            entry["onset"] = rate_onset(x, losses, theory[0], num_bootstrap, level, seed)
        except JaxMoEInputError as err:  # fewer than 3 distinct x or 2 finite replicates: say so
            entry["note"] = str(err)
    return entry


def effective_size_report(gres, num_bootstrap: int = 1000, level: float = 0.95,
                          predicted_onsets: dict | None = None) -> dict:
    """Per group of the grid (`sigma_groups`): its factors, the cells' fit fractions and, per metric, the curve
    against x = n / sigma^2, the collapse test and the onset (module docstring). `predicted_onsets`: per group
    index, {metric or "*": predicted onset x} from the lower-bound lab, reported next to the measured one."""
    require(predicted_onsets is None or isinstance(predicted_onsets, dict), "predicted_onsets",
            type(predicted_onsets).__name__, "must be None or a dict {group index: {metric or '*': x}}")
    groups = []
    for g, (others, cells) in enumerate(sigma_groups(gres)):
        record = {"group": g, "factors": others, "sigmas": [s for s, _ in cells], "fits": _fractions(cells),
                  "metrics": {}}
        if len(cells) >= 2:
            theory = theory_rates(cells[0][1].config.spec)
            seed = cells[0][1].config.seed
            predicted = (predicted_onsets or {}).get(g, {})
            for metric in cells[0][1].metrics:
                entry = _metric_entry(cells, metric, theory.get(metric, (None, "")), num_bootstrap, level, seed)
                entry["predicted_onset"] = predicted.get(metric, predicted.get("*"))
                record["metrics"][metric] = entry
        groups.append(record)
    return {"factor": SIGMA_FACTOR, "match_rtol": MATCH_RTOL, "slope_band": SLOPE_BAND, "level": level,
            "statistic": "median", "groups": groups}


def _onset_text(entry: dict) -> str:
    onset = entry["onset"]
    if onset is None:
        return "no theory slope" if entry["theory_slope"] is None else (entry["note"] or "n/a")
    found = f"{onset['onset']:.3g}" if onset["onset"] is not None else f"not reached by {onset['x_max']:.3g}"
    pred = entry.get("predicted_onset")
    return found + ("" if pred is None else f" (predicted {pred:.3g})")


def format_effective_size(report: dict) -> str:
    """The report as text: per group, per metric, the collapse verdict (worst point) and the onset."""
    lines = [f"effective sample size n / sigma^2 ({report['statistic']}; collapse: family-wise {report['level']:g}; "
             f"onset band: theory slope +- {report['slope_band']:g})"]
    for g in report["groups"]:
        label = ", ".join(f"{k}={v}" for k, v in g["factors"].items()) or "all cells"
        conv = min((min(f["converged"]) for f in g["fits"]), default=float("nan"))
        face = max((max(f["on_boundary"]) for f in g["fits"]), default=float("nan"))
        lines.append(f"group {g['group']} ({label}): sigma {', '.join(f'{s:.3g}' for s in g['sigmas'])}; "
                     f"converged >= {conv:.0%} per n, on a face <= {face:.0%} per n")
        for name, e in g["metrics"].items():
            c = e["collapse"]
            if c["collapses"] is None:
                verdict = "no matched points"
            else:
                w = c["worst"]
                verdict = (f"{'collapses' if c['collapses'] else 'does NOT collapse'} ({len(c['points'])} points; "
                           f"worst log-ratio {w['log_ratio']:+.2f} at x={w['x']:.3g})")
            lines.append(f"  {name:<22} {verdict}; onset {_onset_text(e)}")
    return "\n".join(lines)


def plot_effective_size(gres, report: dict, stem: str) -> list[str]:
    """One row of panels per group, one panel per metric: the median against n / sigma^2, one curve per sigma,
    the theory's slope through the pooled curve's middle point, the onset (solid) and the predicted one (dotted)
    where inside the axis. Returns the paths written ({stem}.png, {stem}.pdf); needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in report["groups"] if g["metrics"]]
    require(len(groups) > 0, "grid", gres.grid.name, "has no group with two started noise levels to plot")
    names = list(dict.fromkeys(name for g in groups for name in g["metrics"]))  # every group's, in order
    fig, axes = plt.subplots(len(groups), len(names), figsize=(3.2 * len(names), 2.8 * len(groups)), squeeze=False)
    cells = dict(enumerate(c for _, c in sigma_groups(gres)))
    for row, g in enumerate(groups):
        for col, name in enumerate(names):
            ax, e = axes[row][col], g["metrics"].get(name)
            if e is None:  # a metric of another group only (over-fitted atoms' error)
                ax.axis("off")
                continue
            for s, res in cells[g["group"]]:
                if name in res.metrics:
                    ax.loglog(res.sizes / s ** 2, np.nanmedian(res.metrics[name], axis=1), "o-", ms=3, label=f"σ={s:.3g}")
            x, med = np.array(e["x"]), np.array([np.nan if v is None else v for v in e["median"]])
            mid = x.size // 2
            if e["theory_slope"] is not None and np.isfinite(med[mid]):
                ax.loglog(x, med[mid] * (x / x[mid]) ** e["theory_slope"], "k--", alpha=0.5,
                          label=f"slope {e['theory_slope']:g}")
            onset = (e["onset"] or {}).get("onset")
            if onset is not None:
                ax.axvline(onset, color="k", lw=1)
            pred = e.get("predicted_onset")
            if pred is not None and x.min() <= pred <= x.max():
                ax.axvline(pred, color="k", ls=":", lw=1)
            ax.set_title(f"{name} ({', '.join(f'{k}={v}' for k, v in g['factors'].items())})", fontsize=7)
            ax.set_xlabel("n / σ²", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[row][0].legend(fontsize=5)
    paths = save_figure(fig, stem, dpi=120)
    plt.close(fig)
    return paths
