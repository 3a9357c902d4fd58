"""Measures, slopes, verdicts and plots for the rows saved by `table1.py fit` (called by `table1.py report`).

Per fit: regression L2 error (quadrature), the row's Voronoi loss (D1 / eq. 16 / D4 / D_H), and the
parameter errors of exactly-fitted cells (`exact_error`, theory n^-1/2) and over-fitted cells
(`overfit_error`, theory n^-1/4) from `jaxmoe.parameter_errors`. Every fit is kept, converged or not; the
converged fraction is reported beside each row.

Verdicts (issue 4's targets):
- L2: mean slope in [-0.6, -0.4];
- polynomial rows: slope of the mean Voronoi loss in [-0.6, -0.4] with a CI containing -0.5; exact-fitted
  errors within 0.08 of -0.5, over-fitted within 0.08 of -0.25;
- slow rows: the loss slope's CI excludes -0.5 and a slower-than-polynomial law is preferred by AIC, by
  at least 2 (a smaller difference is no preference);
- any row where fewer than 90% of fits converged gets its verdicts flagged "unconverged".
"""

from __future__ import annotations

import csv
import json
import os
import warnings

import jax
import numpy as np

import jaxmoe
from jaxmoe.estimation.problem import STATUS_NAMES
from jaxmoe.losses.curve import fit_metrics
from jaxmoe.sweeps.store import atomic_write_json

POLYNOMIAL_ROWS = ("softmax-ridge", "dts-nonlinear-router", "hierarchical-ridge")
THEORY_SLOPE = {"l2_error": -0.5, "exact_error": -0.5, "overfit_error": -0.25, "level1_error": -0.5}
MIN_CONVERGED = 0.9  # below this the verdicts are flagged: most fits stopped at the iteration limit
DECISIVE_AIC = 2.0  # a slow law must beat the power law by this much AIC (|dAIC| < 2: no real preference)
LOSS_NAMES = ("voronoi_d1", "voronoi_temperature", "voronoi_d4", "voronoi_hierarchical")


def measure(setting, fit) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every metric of every fit, arrays [size, replicate], and the empty Voronoi cells per fit (the sweep's
    own `fit_metrics`, so Table 1 and `jaxmoe sweep` measure the same things)."""
    return fit_metrics(setting, fit)


def _slope(sizes, values, name, row):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # non-finite counts are reported, not hidden
        mean = jaxmoe.loglog_slope(sizes, values.T, "mean", num_bootstrap=2000, seed=0)
        median = jaxmoe.loglog_slope(sizes, values.T, "median", num_bootstrap=2000, seed=0)
        laws = jaxmoe.compare_laws(sizes, mean.values)
    theory = THEORY_SLOPE.get(name, -0.5 if row in POLYNOMIAL_ROWS else None)
    return {"slope": mean.slope, "ci": [mean.ci_low, mean.ci_high], "median_slope": median.slope,
            "median_ci": [median.ci_low, median.ci_high], "mean_by_n": mean.values.tolist(),
            "non_finite_by_n": mean.num_nan.tolist(), "law_preferred": laws.preferred,
            "delta_aic_slow_minus_power": laws.delta_aic, "theory_slope": theory}


def verdicts(row: str, slopes: dict, no_slope=()) -> dict[str, str]:
    """`no_slope`: metrics measured but with too few finite values per n for a slope (a verdict of its own)."""
    out = {name: "no slope (too few finite values)" for name in no_slope if row in POLYNOMIAL_ROWS}
    l2 = slopes["l2_error"]["slope"]
    out["l2_error"] = "met" if -0.6 <= l2 <= -0.4 else "not met"
    loss = next(n for n in LOSS_NAMES if n in slopes)
    s = slopes[loss]
    if row in POLYNOMIAL_ROWS:
        ok = -0.6 <= s["slope"] <= -0.4 and s["ci"][0] <= -0.5 <= s["ci"][1]
        out[loss] = "met" if ok else "not met"
        for name in ("exact_error", "overfit_error", "level1_error"):
            if name not in slopes:
                continue
            e = slopes[name]
            out[name] = "met" if abs(e["slope"] - THEORY_SLOPE[name]) <= 0.08 else "not met"
    else:
        excludes = not (s["ci"][0] <= -0.5 <= s["ci"][1])
        slow = s["delta_aic_slow_minus_power"] <= -DECISIVE_AIC
        out[loss] = "met" if excludes and slow else (
            "not met (CI contains -0.5)" if not excludes else
            f"not met (no slow law preferred by dAIC <= -{DECISIVE_AIC:g})")
    return out


def write_csv(path, row, fit, metrics):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "n", "replicate", "metric", "value", "status", "converged", "iterations",
                    "objective", "objective_truth"])
        for i, n in enumerate(fit.sizes):
            for r in range(fit.objective.shape[1]):
                tail = [STATUS_NAMES[int(fit.status[i, r])], bool(fit.converged[i, r]), int(fit.iterations[i, r]),
                        repr(float(fit.objective[i, r])), repr(float(fit.objective_truth[i, r]))]
                for name, values in metrics.items():
                    w.writerow([row, int(n), r, name, repr(float(values[i, r]))] + tail)
    os.replace(tmp, path)


def plot(folder, row, fit, slopes, meta):
    # matplotlib is an optional dependency (the `plot` extra): imported only when a plot is drawn.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = fit.sizes.astype(float)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, s in slopes.items():
        mean = np.asarray(s["mean_by_n"])
        logn, centre = np.log(ns), np.mean(np.log(mean))
        line = lambda b: np.exp(centre + b * (logn - logn.mean()))  # noqa: E731  (lines through the centroid)
        dots = ax.loglog(ns, mean, "o", ms=4, label=f"{name}: {s['slope']:.2f} [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]")
        colour = dots[0].get_color()
        ax.loglog(ns, line(s["slope"]), "-", color=colour, lw=1)
        ax.fill_between(ns, line(s["ci"][0]), line(s["ci"][1]), color=colour, alpha=0.15)
        if s["theory_slope"] is not None:
            ax.loglog(ns, line(s["theory_slope"]), ":", color=colour, lw=1)
    ax.set_xlabel("n")
    ax.set_ylabel("mean over replicates")
    conv = meta["summary"]["converged_fraction"]
    ax.set_title(f"{row}, k = {meta['k']}, sigma = {meta['sigma']}, {fit.objective.shape[1]} replicates\n"
                 f"line: LS fit, band: 95% bootstrap CI, dotted: theory slope; converged {conv:.1%}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "rate_curve.png"), dpi=120)
    # no creation date: re-running the report leaves an unchanged PDF byte-identical
    fig.savefig(os.path.join(folder, "rate_curve.pdf"), metadata={"CreationDate": None})
    plt.close(fig)


def report(out: str, rows, load_row) -> int:
    """Report the saved `rows` of `out`; `load_row(folder)` -> (setting, fit, meta) is `table1.load_row`
    (passed in, so that `table1` imports this module and not the other way round)."""
    table = {}
    for row in rows:
        folder = os.path.join(out, row)
        if not os.path.exists(os.path.join(folder, "meta.json")):
            print(f"{row}: not fitted yet, skipped")
            continue
        setting, fit, meta = load_row(folder)
        metrics, empty = measure(setting, fit)
        slopes, skipped = {}, {}
        for name, values in metrics.items():
            try:
                slopes[name] = _slope(fit.sizes, values, name, row)
            except jaxmoe.JaxMoEInputError as err:  # e.g. too few finite values at some n: say so
                skipped[name] = str(err)
        summary = {"row": row, "paper_row": setting.row, "theory": setting.theory, "meta": meta,
                   "slopes": slopes, "no_slope": skipped,
                   "non_finite_by_metric": {k: int(np.sum(~np.isfinite(v))) for k, v in metrics.items()},
                   "fits_with_empty_cells": int(np.sum(empty > 0)),
                   "verdicts": verdicts(row, slopes, list(skipped)),
                   # a curve of unconverged fits is not the estimator's curve: its verdicts are flagged
                   "converged_enough": meta["summary"]["converged_fraction"] >= MIN_CONVERGED,
                   "converged_fraction": meta["summary"]["converged_fraction"],
                   "below_truth_fraction": meta["summary"]["below_truth_fraction"]}
        write_csv(os.path.join(folder, "results.csv"), row, fit, metrics)
        atomic_write_json(os.path.join(folder, "summary.json"), summary)
        plot(folder, row, fit, slopes, meta)
        table[row] = {"verdicts": summary["verdicts"], "converged_fraction": summary["converged_fraction"],
                      "fits_with_empty_cells": summary["fits_with_empty_cells"],
                      **{name: {k: s[k] for k in ("slope", "ci", "median_slope", "law_preferred",
                                                  "delta_aic_slow_minus_power")} for name, s in slopes.items()}}
        print(json.dumps({"row": row, **table[row]}, default=float))
    atomic_write_json(os.path.join(out, "table1.json"), table)
    with open(os.path.join(out, "table1.md"), "w") as fh:
        fh.write(markdown(table))
    return 0


def _cell(s):
    return f"{s['slope']:.2f} [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]" if s else "-"


def markdown(table: dict) -> str:
    """The experiments/README.md table: slopes of the mean with 95% bootstrap CIs, law preferred, verdicts."""
    lines = ["| row | converged | L2 slope | Voronoi loss slope (law preferred, dAIC slow-power) | "
             "exact-fitted errors | over-fitted errors | verdicts |", "|---|---|---|---|---|---|---|"]
    for row, t in table.items():
        loss = next(n for n in LOSS_NAMES if n in t)
        law = f"{t[loss]['law_preferred']}, {t[loss]['delta_aic_slow_minus_power']:+.1f}"
        bad = [f"{k}: {v}" for k, v in t["verdicts"].items() if v != "met"]
        verdict = "all met" if not bad else "; ".join(bad)
        if t["converged_fraction"] < MIN_CONVERGED:
            verdict = f"**unconverged** (< {MIN_CONVERGED:.0%}); " + verdict
        lines.append(f"| {row} | {t['converged_fraction']:.1%} | {_cell(t.get('l2_error'))} | {loss} "
                     f"{_cell(t[loss])} ({law}) | {_cell(t.get('exact_error'))} | {_cell(t.get('overfit_error'))} "
                     f"| {verdict} |")
    return "\n".join(lines) + "\n"
