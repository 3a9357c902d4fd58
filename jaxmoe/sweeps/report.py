r"""Reports of a sweep folder: the tidy table, the summary with slopes and theory, and the plots.

- `results.csv`: one row per (n, replicate, metric) with the fit's solver status, iterations, objective,
  objective at the truth, reference objective, reached-minimum flag, number of empty Voronoi cells and
  `on_boundary` (a free parameter within 1e-6 of a face of Theta, relative to the box's width:
  `MoEFamily.on_boundary`, computed from the stored parameters, so older folders have it too).
  Floats are written with `repr` (shortest round-trip form), so the table is exact. Failed and non-finite
  fits are rows like the others (their values may be `nan`): nothing is dropped.
- `results.parquet`: the same table with typed columns (`jaxmoe.sweeps.table` has the schema; needs pyarrow,
  the `parquet` extra: without it the summary says so in `parquet_note`); `load_results(DIR, frame="pandas")`
  gives it as a data frame.
- `summary.json`: the fit counts by status, the fraction of fits on a face of the box (overall and per n),
  Wilson 95% intervals of the converged and on-the-face fractions (`converged_ci`, `boundary_ci`), the
  Monte Carlo standard errors per n of every mean (`mean_se`), median (`median_se`) and 90% quantile
  (`q90`, `q90_se`; bootstrap, `losses.rates.bootstrap_se`); per metric the log-log slope of the mean with a bootstrap CI
  (`loglog_slope`), the slope of the median, the law preferred by `compare_laws` (power vs slower than
  any polynomial), the theory's slope where the paper gives one (THEORY.md §6), the mean per n with a
  bootstrap CI, and the finite / non-finite counts per n; and, since Theorem 1 and its kin are O_P statements
  (about quantiles, which the mean is not: a few far-off fits move it), `quantile_slopes` {"0.5", "0.75",
  "0.9": {slope, ci}} (slopes of the per-n quantiles, bootstrap CIs), `theil_sen` {statistic, slope, ci}
  (over the per-n medians), the local slopes of the median, and `window_slopes` [{n_min, statistic, slope,
  ci}] (the median's slope per smallest n used) with `window_stable` (every window's CI overlaps the full
  range's); top level `boundary_fraction` (also in `fits`); timings and provenance. `slope` (of the mean) is
  kept as it was; `law_preferred` is read off the means and is `"none"` when |dAIC| < 2
  (`LawComparison.verdict`: a coin toss is no preference; `law_best_aic` keeps the smallest-AIC law), and the
  text summary prints the dAIC next to it.
- `rate_curves.png` / `.pdf`: one log-log panel per metric (`metric_panel`): mean per n, its CI band, the fitted
  line and the theory's slope (dashed, through the fitted line at the middle n, or through the means where no
  slope can be fitted); axes labelled in words, the non-finite count and any note in the panel's title.

A partial folder (a sweep still running or killed) is reported on the chunks it has; `complete` says so. A
folder with an unreadable chunk file (truncated, corrupted, failing its checksum: `store.load_chunk`) is not
reported: one line names the file (exit 2 in the CLI); a sweep run again with `--resume` recomputes it.
Reading takes no lock (`store`), so a running sweep can be reported at any time; the files written here are
written atomically, like the sweep's own. This module reads the folder through `jaxmoe.sweeps.store` only:
`runner` imports it (to report at the end of a sweep), never the other way round.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import statistics
import textwrap
import warnings
from typing import Iterator, NamedTuple

import jax
import numpy as np

from jaxmoe.validation import JaxMoEInputError, require
from jaxmoe.estimation.options import pruning_changes_fits
from jaxmoe.estimation.problem import STATUS_NAMES
from jaxmoe.families.base import SLOW
from jaxmoe.losses.rates import bootstrap_se, compare_laws, local_slopes, loglog_slope, theil_sen_fit, window_slopes
from jaxmoe.sweeps.config import SweepConfig, config_from_dict
from jaxmoe.sweeps.grid import is_grid_folder
from jaxmoe.sweeps.table import FRAMES, sweep_columns, to_frame, write_parquet
from jaxmoe.sweeps.figures import save_figure
from jaxmoe.sweeps.store import (
    FIT_FIELDS,
    atomic_write_bytes,
    atomic_write_json,
    completed_chunks,
    param_field,
    plan_chunks,
    read_folder_config,
    read_runs,
)

COLUMNS = ("setting", "n", "replicate", "metric", "value", "status", "converged", "iterations", "objective",
           "objective_truth", "objective_reference", "reached_minimum", "empty_cells", "on_boundary")
# Ridge / FFN experts with these activations are strongly identifiable (THEORY.md §2).


class SweepResults(NamedTuple):
    """The results found in a sweep folder; arrays are indexed [size, replicate] over `sizes` (done chunks).

    `fits`: objective, status, ... (`store.FIT_FIELDS`); `metrics`: name -> values; `params`: the fitted
    parameters, the family's parameter NamedTuple with leaves [size, replicate, ...] (None if no chunk)."""

    config: SweepConfig
    sizes: np.ndarray
    fits: dict
    metrics: dict
    chunk_infos: list
    chunks_total: int
    params: object = None

    @property
    def complete(self) -> bool:
        return len(self.chunk_infos) == self.chunks_total


def folder_config(out: str) -> SweepConfig:
    """The config stored in a sweep folder (re-validated; its hash must be the stored one)."""
    stored = read_folder_config(out)
    require(stored is not None or not is_grid_folder(out), "DIR", out, "is a grid folder (grid.json): read it "
            "with jaxmoe.sweeps.load_grid_results / write_grid_report, or one cell's folder (cells/cell-XXX)")
    require(stored is not None, "DIR", out, "has no config.json: not a jaxmoe sweep folder")
    raw = {**stored["config"], "labels": stored.get("labels", {})}
    try:
        config = config_from_dict(raw)
    except JaxMoEInputError as err:
        raise JaxMoEInputError("DIR", out, f"its config.json no longer validates ({err})") from None
    require(config.hash == stored["hash"], "DIR", out,
            f"config.json hash {stored['hash']} does not match its content ({config.hash}): edited by hand?")
    if stored.get("preset"):
        config = SweepConfig({**config.spec, "preset": stored["preset"]}, config.raw)
    return config


def load_results(out: str, frame: str | None = None):
    """Read every completed chunk of the sweep folder `out` into a `SweepResults` (per-fit arrays); with
    `frame="pandas"` (or `"arrow"`) the tidy table instead, as a data frame (schema: `jaxmoe.sweeps.table`).
    An unreadable chunk file (truncated, corrupted, failing its checksum) is refused (`JaxMoEInputError`
    naming it), never left out silently."""
    if frame is not None:
        require(frame in FRAMES, "frame", frame, f"must be one of {list(FRAMES)} (or None: the arrays)")
        return to_frame(sweep_columns(load_results(out)), frame)
    config = folder_config(out)
    plan = plan_chunks(config)
    done = completed_chunks(out, config, plan, strict=True)
    chunks = [done[i] for i in sorted(done)]
    if chunks:
        sizes = np.concatenate([a["sizes"] for a, _ in chunks])
        fits = {k: np.concatenate([a[k] for a, _ in chunks]) for k in FIT_FIELDS}
        names = [k[len("metric/"):] for k in chunks[0][0] if k.startswith("metric/")]
        metrics = {k: np.concatenate([a["metric/" + k] for a, _ in chunks]) for k in names}
        model = config.setting().fitted_model()
        params = _params(model, [a for a, _ in chunks])
        # derived from the stored parameters, not stored: folders written before the flag existed have it too
        fits["on_boundary"] = model.on_boundary(params)
    else:
        r = config.replicates
        sizes = np.zeros(0, dtype=np.int64)
        fits = {k: np.zeros((0, r)) for k in FIT_FIELDS + ("on_boundary",)}
        metrics, params = {}, None
    return SweepResults(config, sizes, fits, metrics, [info for _, info in chunks], len(plan), params)


def _params(model, chunks: list) -> object:
    """The fitted parameters as the family's NamedTuple, rebuilt on the fitted model's template."""
    template = model.zeros()
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = [np.concatenate([a[param_field(path)] for a in chunks]) for path, _ in paths]
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---------------------------------------------------------------- table
def _num(value) -> str:
    value = float(value)
    return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else repr(value))


def _cell(value):
    """A table cell as results.csv writes it: floats by `_num` (exact), None (no reference run) empty."""
    if value is None:
        return ""
    return _num(value) if isinstance(value, (float, np.floating)) else value


def result_rows(res: SweepResults) -> Iterator[list]:
    """The rows of the tidy table (by n, replicate, metric), in `COLUMNS` order: `table.sweep_columns`, the
    same table Parquet gets, formatted for CSV."""
    columns = sweep_columns(res)
    for row in zip(*columns.values()):
        yield [_cell(value) for value in row]


def results_csv(res: SweepResults) -> str:
    """The tidy table as CSV text (rows by n, replicate, metric)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(result_rows(res))
    return buf.getvalue()


# ---------------------------------------------------------------- theory
def theory_rates(spec: dict) -> dict[str, tuple[float | None, str]]:
    """Per metric: (theory slope or None, where it comes from / why there is none): the fitted model's family
    states them (`theory_rates()` of `jaxmoe.families`; THEORY.md §6)."""
    return SweepConfig(spec).setting().fitted_model().theory_rates()


# ---------------------------------------------------------------- summary
def _mean_band(values: np.ndarray, num_bootstrap: int, level: float, seed: int) -> tuple[list, list]:
    """Percentile bootstrap CI of the mean of the finite replicates, per n (rows of `values`)."""
    rng = np.random.default_rng(seed)
    low, high = [], []
    for row in values:
        c = row[np.isfinite(row)]
        if c.size < 2:
            low.append(None), high.append(None)
            continue
        boot = c[rng.integers(0, c.size, size=(num_bootstrap, c.size))].mean(axis=1)
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        low.append(float(lo)), high.append(float(hi))
    return low, high


def _mean_se(values: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean per n (rows): sd / sqrt(finite replicates); NaN below 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        count = np.isfinite(values).sum(axis=1)
        return np.where(count >= 2, np.nanstd(values, axis=1, ddof=1) / np.sqrt(np.maximum(count, 1)), np.nan)


def _nanquantile(values: np.ndarray, q: float) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, counted in the entry
        return np.nanquantile(values, q, axis=1)


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval of a binomial fraction (None without trials): the Monte Carlo uncertainty of a
    converged or on-the-box-face fraction, honest at 0 and 1 where the normal interval collapses."""
    if trials == 0:
        return None
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _fit_counts(res: SweepResults) -> dict:
    """How the fits ended: counts by status, converged / below-truth / reached-minimum fractions."""
    status, f = res.fits["status"], res.fits
    return {"count": int(status.size),
            "converged_fraction": float(np.mean(f["converged"])) if status.size else None,
            "status_counts": {name: int(np.sum(status == code)) for code, name in STATUS_NAMES.items()},
            "nonfinite_objective": int(np.sum(~np.isfinite(f["objective"]))),
            "below_truth_fraction": float(np.mean(f["objective"] <= f["objective_truth"]))
            if status.size else None,
            "with_empty_cells": int(np.sum(f["empty_cells"] > 0)),
            "boundary_fraction": float(np.mean(f["on_boundary"])) if status.size else None,
            "converged_ci": wilson_interval(int(np.sum(f["converged"])), int(status.size)),
            "boundary_ci": wilson_interval(int(np.sum(f["on_boundary"])), int(status.size)),
            "boundary_fraction_by_n": np.mean(f["on_boundary"], axis=1).tolist() if status.size else [],
            "reached_minimum_fraction": float(np.mean(f["reached_minimum"]))
            if res.config.spec["solver"]["reference"] and status.size else None}


ROBUST_KEYS = ("quantile_slopes", "theil_sen", "local_median_slopes", "window_slopes", "window_stable")
QUANTILES = {"0.5": "median", "0.75": "q75", "0.9": "q90"}  # summary.json's quantile_slopes keys -> statistics


def _robust_slopes(ns: np.ndarray, losses: np.ndarray, medians: np.ndarray, num_bootstrap: int, level: float,
                   seed: int) -> dict:
    """The slopes an O_P rate is about: of the median, 75% and 90% quantiles per n (`quantile_slopes`, bootstrap
    CIs), the Theil-Sen slope of the per-n medians with its bootstrap CI, the local slopes of the median, and the
    median's slope per smallest n used (`window_slopes`; `window_stable`: every window's CI overlaps the full
    range's). `losses.rates` has the estimators."""
    out: dict = {"quantile_slopes": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # omitted non-finite values are counted in the entry
        for key, statistic in QUANTILES.items():
            fit = loglog_slope(ns, losses, statistic, num_bootstrap, seed, level)
            out["quantile_slopes"][key] = {"slope": fit.slope, "ci": [fit.ci_low, fit.ci_high]}
        window = window_slopes(ns, losses, "median", num_bootstrap, seed, level)
        slope, lo, hi = theil_sen_fit(ns, losses, "median", num_bootstrap, seed, level)
    out["theil_sen"] = {"statistic": "median", "slope": slope, "ci": [lo, hi]}
    out["local_median_slopes"] = local_slopes(ns, medians).tolist()
    out["window_slopes"] = [{"n_min": float(n), "statistic": window.statistic, "slope": float(b),
                             "ci": [float(lo), float(hi)]}
                            for n, b, lo, hi in zip(window.n_min, window.slope, window.ci_low, window.ci_high)]
    out["window_stable"] = not window.moves_with_window
    return out


def _metric_summary(ns: np.ndarray, values: np.ndarray, theory: tuple, num_bootstrap: int, level: float,
                    seed: int) -> dict:
    """One metric's entry of the summary: slopes with CIs, law preferred, theory, mean per n with CI, counts."""
    finite = np.isfinite(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: counted below, not warned about
        mean, median = np.nanmean(values, axis=1), np.nanmedian(values, axis=1)
    low, high = _mean_band(values, num_bootstrap, level, seed)
    slope_theory, why = theory
    entry = {"theory_slope": slope_theory, "theory": why, "slope": None, "ci": None, "level": level,
             "median_slope": None, "r_squared": None, "law_preferred": None, "law_best_aic": None,
             "delta_aic_slow_minus_power": None,
             "mean": [_finite_or_none(v) for v in mean], "mean_ci_low": low, "mean_ci_high": high,
             "median": [_finite_or_none(v) for v in median], "finite": finite.sum(axis=1).tolist(),
             "mean_se": [_finite_or_none(v) for v in _mean_se(values)],
             # Monte Carlo SEs of the quantiles an O_P statement is about (bootstrap, per n)
             "median_se": [_finite_or_none(v) for v in bootstrap_se(values, "median", num_bootstrap, seed)],
             "q90": [_finite_or_none(v) for v in _nanquantile(values, 0.9)],
             "q90_se": [_finite_or_none(v) for v in bootstrap_se(values, "q90", num_bootstrap, seed)],
             "nonfinite": (~finite).sum(axis=1).tolist(), "note": None,
             **{key: None for key in ROBUST_KEYS}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # omitted non-finite values are counted above
            s = loglog_slope(ns, values.T, "mean", num_bootstrap, seed, level)
            med = loglog_slope(ns, values.T, "median", num_bootstrap, seed, level)
        entry.update(slope=s.slope, ci=[s.ci_low, s.ci_high], intercept=s.intercept, r_squared=s.r_squared,
                     median_slope=med.slope, median_ci=[med.ci_low, med.ci_high],
                     **_robust_slopes(ns, values.T, med.values, num_bootstrap, level, seed))
        laws = compare_laws(ns, s.values)
        entry.update(law_preferred=laws.verdict, law_best_aic=laws.preferred, delta_aic_slow_minus_power=laws.delta_aic)
    except JaxMoEInputError as err:  # too few sizes or finite replicates: say so rather than guess
        entry["note"] = str(err)
    return entry


def _law_text(s: dict) -> str:
    """The law column: the preferred law, or "no preference" below NO_PREFERENCE_AIC, with the dAIC it rests on."""
    law = "no preference" if s["law_preferred"] == "none" else s["law_preferred"]
    return f"{law} (dAIC {s['delta_aic_slow_minus_power']:+.1f})"


def estimator(spec: dict) -> str:
    """Which estimator a sweep's fits are, in words: the global least squares (best of several starts) or,
    with one near-truth start, the oracle-initialised local fit the field's published rates use."""
    s = spec["solver"]
    decay = s.get("init_noise_decay", 0.0)
    noise = f"noise {s['init_noise']:g}" + (f" n^-{decay:g}" if decay else "")
    if s["restarts"] == 1 and s["init"] == "near_truth":
        return f"oracle-initialised: one start at the split truth ({noise}), a local fit, not the global least squares"
    pruned = (f", the best {s['prune_keep']} at iteration {s['prune_at']} continued"
              if pruning_on(s) else "")
    return f"least squares: the best of {s['restarts']} starts ({s['init']}, {noise}{pruned})"


def pruning_on(solver: dict) -> bool:
    """Whether a config's successive halving changes its fits (`pruning_changes_fits` on the written [solver];
    pruning is written only for LM, whose options always hold max_iter)."""
    if not solver.get("prune_at"):
        return False
    return pruning_changes_fits(solver["prune_at"], solver["prune_keep"], solver["restarts"],
                                solver["options"]["max_iter"])


def summarize(res: SweepResults, num_bootstrap: int = 1000, level: float = 0.95) -> dict:
    """The summary dict written to `summary.json` (see the module docstring)."""
    config, ns = res.config, res.sizes.astype(float)
    seed = config.seed
    theory = theory_rates(config.spec)
    metrics = {name: _metric_summary(ns, values, theory.get(name, (None, "unknown")), num_bootstrap, level, seed)
               for name, values in res.metrics.items()}
    infos, fits = res.chunk_infos, _fit_counts(res)
    return {
        "setting": config.name, "preset": config.spec.get("preset"), "config_hash": config.hash,
        "complete": res.complete, "chunks_done": len(infos), "chunks_total": res.chunks_total,
        "sizes": res.sizes.tolist(), "replicates": config.replicates, "seed": seed,
        "k_star": config.spec["model"]["k_star"], "k_fit": config.spec["model"]["k_fit"],
        "estimator": estimator(config.spec),
        "fits": fits, "boundary_fraction": fits["boundary_fraction"], "metrics": metrics,
        "num_bootstrap": num_bootstrap,
        "seconds": {"chunks": float(sum(i["seconds"] for i in infos)),
                    "compile_wait": float(sum(i["compile_seconds"] for i in infos))},
    }


# ---------------------------------------------------------------- plots
def metric_panel(ax, ns: np.ndarray, name: str, s: dict) -> None:
    """One metric's log-log panel: mean per n, its CI band, the fitted line and the theory's slope."""
    mean = np.array([np.nan if v is None else v for v in s["mean"]])
    low = np.array([np.nan if v is None else v for v in s["mean_ci_low"]])
    high = np.array([np.nan if v is None else v for v in s["mean_ci_high"]])
    ax.fill_between(ns, low, high, color="C0", alpha=0.2, lw=0, label=f"{int(s['level'] * 100)}% CI of the mean")
    ax.loglog(ns, mean, "o", color="C0", ms=4, label="mean over replicates")
    notes = []
    if s["slope"] is not None:
        line = np.exp(s["intercept"]) * ns ** s["slope"]
        ax.loglog(ns, line, "-", color="C1",
                  label=f"fit: slope {s['slope']:.2f} [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]")
        mid = math.sqrt(ns[0] * ns[-1])
        anchor = np.exp(s["intercept"]) * mid ** s["slope"]
    else:  # no fitted line: the theory's line goes through the geometric mean of the finite means
        notes.append("no slope: " + (s["note"] or ""))
        good = np.isfinite(mean) & (mean > 0)
        mid, anchor = (math.exp(np.mean(np.log(ns[good]))), math.exp(np.mean(np.log(mean[good])))) \
            if good.any() else (None, None)
    if s["theory_slope"] is not None and mid is not None:
        ax.loglog(ns, anchor * (ns / mid) ** s["theory_slope"], "--", color="k", alpha=0.6,
                  label=f"theory: slope {s['theory_slope']:g}")
    elif s["theory_slope"] is None:
        notes.append("theory: " + s["theory"].split(" (")[0])
    bad = int(sum(s["nonfinite"]))
    # notes go under the title, not in the axes, so they never overlap the legend or the points; each is
    # wrapped to the panel's width (two lines at most), so neighbouring titles never collide
    ax.set_title(name + (f" ({bad} non-finite values)" if bad else "") +
                 "".join("\n" + "\n".join(textwrap.wrap(note, NOTE_WIDTH, max_lines=2, placeholder=" ..."))
                         for note in notes),
                 fontsize=9 if notes else 10)
    ax.set_xlabel("sample size n")
    ax.set_ylabel("mean over replicates")
    _decade_ticks(ax)
    ax.legend(fontsize=6, loc="best")


NOTE_WIDTH = 56  # characters of a 9-point title line that fit a 4.3-inch panel (measured on a report)
_SUPERSCRIPT = str.maketrans("0123456789-", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b")


def plain_tick_label(label: str) -> str:
    """A log formatter's mathtext label (`$\\mathdefault{2\\times10^{-3}}$`) as plain Unicode text (`2×10⁻³`).

    The same label without mathtext: matplotlib parses every mathtext string again for each output (layout,
    PNG, PDF), and that parse was about a third of a report's plotting time. Anything else is left as it is."""
    m = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
    if not m:
        return label
    body = re.sub(r"\^\{(-?\d+)\}", lambda e: e.group(1).translate(_SUPERSCRIPT), m.group(1))
    body = body.replace(r"\times", "\u00d7")
    return label if ("\\" in body or "{" in body) else body.replace("-", "\u2212")


def _decade_ticks(ax) -> None:
    """Plain-text log tick labels; only the powers of ten on an axis spanning more than a decade (minor labels
    collide there)."""
    from matplotlib.ticker import LogFormatterSciNotation, NullFormatter

    class PlainLogFormatter(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            return plain_tick_label(super().__call__(x, pos))

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log":
            continue
        axis.set_major_formatter(PlainLogFormatter())
        decades = lo > 0 and hi / lo > 10
        axis.set_minor_formatter(NullFormatter() if decades else PlainLogFormatter(labelOnlyBase=False))


def plot_curves(res: SweepResults, summary: dict, stem: str) -> list[str]:
    """`stem.png` and `stem.pdf`: one log-log panel per metric (needs matplotlib, the `plot` extra)."""
    # Imported here, not at the top: matplotlib is an optional dependency (the `plot` extra); without it
    # write_report still writes the table and the summary. A bare Figure (no pyplot): no GUI backend
    # needed, and the caller's backend (a notebook's) is left alone.
    from matplotlib.figure import Figure

    names = list(res.metrics)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.3 * cols, 3.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    ns = res.sizes.astype(float)
    for ax, name in zip(axes.flat, names):
        metric_panel(ax, ns, name, summary["metrics"][name])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    done = "" if res.complete else f" (partial: {len(res.chunk_infos)} of {res.chunks_total} chunks)"
    f = summary["fits"]
    fig.suptitle(f"{res.config.name}: k* = {summary['k_star']}, k = {summary['k_fit']}, "
                 f"{res.config.replicates} replicates per n; converged {_percent(f['converged_fraction'])}, "
                 f"on a face of the box {_percent(f['boundary_fraction'])}{done}", fontsize=10)
    return save_figure(fig, stem, dpi=120)


# ---------------------------------------------------------------- the report
def write_parquet_or_note(path: str, columns: dict, summary: dict) -> list[str]:
    """Write `results.parquet` (returns its name), or, without pyarrow, say so in `summary["parquet_note"]`."""
    try:
        write_parquet(path, columns)
    except ImportError as err:
        summary["parquet_note"] = str(err)
        return []
    return [os.path.basename(path)]


def write_report(out: str, num_bootstrap: int = 1000, level: float = 0.95, plots: bool = True) -> dict:
    """Write `results.csv`, `summary.json` and the plots of the sweep folder `out`; returns the summary."""
    res = load_results(out)
    require(len(res.sizes) > 0, "DIR", out, "has no completed chunk yet: nothing to report")
    summary = summarize(res, num_bootstrap, level)
    text = results_csv(res)
    atomic_write_bytes(os.path.join(out, "results.csv"), lambda fh: fh.write(text.encode()))
    files = ["results.csv", *write_parquet_or_note(os.path.join(out, "results.parquet"), sweep_columns(res),
                                                   summary), "summary.json"]
    if plots and res.metrics:
        try:
            files += [os.path.basename(p) for p in plot_curves(res, summary, os.path.join(out, "rate_curves"))]
        except ImportError:
            summary["plots_note"] = "matplotlib is not installed (pip install 'jaxmoe[plot]'): no plots"
    summary["files"] = files
    runs = read_runs(out)
    if runs:
        last = runs[-1]
        summary["provenance"] = {k: last.get(k) for k in ("jaxmoe", "jax", "jaxlib", "device", "cpu_count")}
        summary["provenance"]["runs"] = len(runs)
    atomic_write_json(os.path.join(out, "summary.json"), summary)
    return summary


def _percent(fraction) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.1f}%"


def format_summary(summary: dict) -> str:
    """The summary as a few lines of text (what `jaxmoe sweep` / `jaxmoe report` print)."""
    f = summary["fits"]
    counts = ", ".join(f"{k} {v}" for k, v in f["status_counts"].items() if v)
    conv = "n/a" if f["converged_fraction"] is None else f"{100 * f['converged_fraction']:.1f}%"
    state = "" if summary["complete"] else f"  [partial: {summary['chunks_done']} of {summary['chunks_total']} chunks]"
    lines = [f"{summary['setting']}: {f['count']} fits ({len(summary['sizes'])} sizes x {summary['replicates']} "
             f"replicates), k* = {summary['k_star']}, k = {summary['k_fit']}; converged {conv} ({counts}); "
             f"on a face of the box {_percent(f.get('boundary_fraction'))}{state}",
             f"estimator: {summary.get('estimator', '?')}",
             f"{'metric':<22} {'slope':>7}  {'CI':<17} {'median':>7} {'q90':>7} {'theory':>7}  law preferred"]
    for name, s in summary["metrics"].items():
        theory = "slow" if s["theory_slope"] is None and s["theory"].startswith(SLOW) else \
            ("?" if s["theory_slope"] is None else f"{s['theory_slope']:g}")
        if s["slope"] is None:
            lines.append(f"{name:<22} {'-':>7}  {'':<17} {'-':>7} {'-':>7} {theory:>7}  ({s['note']})")
            continue
        ci = f"[{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"
        window = "  [median slope moves with the window]" if s.get("window_stable") is False else ""
        lines.append(f"{name:<22} {s['slope']:7.3f}  {ci:<17} {s['median_slope']:7.3f} "
                     f"{s['quantile_slopes']['0.9']['slope']:7.3f} "
                     f"{theory:>7}  {_law_text(s)}{window}")
    return "\n".join(lines)
