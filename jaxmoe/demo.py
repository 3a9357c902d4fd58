"""`make demo`: one rate curve of the softmax+ridge preset, end to end, with a table, a summary and a plot.

    python -m jaxmoe.demo --out demo_output [--preset softmax-ridge] [--sizes 200,...] [--replicates 16]

Fits every (n, replicate) pair with `fit_curve` (over-fitted, k = k* + 1, near-truth start, projected
Levenberg-Marquardt), measures the Voronoi loss D1 and the regression L2 error of every fit, fits log-log
slopes with bootstrap CIs, and writes `results.csv`, `summary.json` and `rate_curve.png` into --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import jax
import numpy as np

import jaxmoe
from jaxmoe.estimation.problem import STATUS_NAMES

DEFAULT_SIZES = "300,600,1200,2500,5000,10000,20000"


def _parse_sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise jaxmoe.JaxMoEInputError("--sizes", text, "must be comma-separated integers") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoe.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_output", help="folder for results.csv, summary.json, rate_curve.png")
    parser.add_argument("--preset", default="softmax-ridge", choices=jaxmoe.PRESET_NAMES)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated sample sizes")
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        setting = jaxmoe.get_preset(args.preset)
        sizes = _parse_sizes(args.sizes)
        os.makedirs(args.out, exist_ok=True)
        t0 = time.perf_counter()
        print(f"fitting {args.replicates} replicates x {len(sizes)} sizes of {setting.name} (k = {setting.k_fit}) ...",
              flush=True)
        fit = jaxmoe.fit_curve(setting, sizes, args.replicates, args.seed)
    except jaxmoe.JaxMoEInputError as err:
        print(f"jaxmoe.demo: error: {err}", file=sys.stderr)
        return 2
    metrics = jaxmoe.curve_metrics(setting, fit)
    summary = {"preset": setting.name, "row": setting.row, "theory": setting.theory, "fits": fit.summary(),
               "seconds_total": time.perf_counter() - t0, "slopes": {}}
    for name, values in metrics.items():
        slope = jaxmoe.loglog_slope(fit.sizes, values.T, num_bootstrap=1000, seed=args.seed)
        laws = jaxmoe.compare_laws(fit.sizes, np.nanmean(values, axis=1))
        summary["slopes"][name] = {"slope": slope.slope, "ci": [slope.ci_low, slope.ci_high],
                                   "median_slope": jaxmoe.loglog_slope(fit.sizes, values.T, "median", 200).slope,
                                   "law_preferred": laws.preferred, "delta_aic_slow_minus_power": laws.delta_aic}
    _write_csv(os.path.join(args.out, "results.csv"), setting, fit, metrics)
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=float)
    _plot(os.path.join(args.out, "rate_curve.png"), setting, fit, metrics, summary)
    print(json.dumps({"fits": summary["fits"], "slopes": summary["slopes"]}, indent=2, default=float))
    print(f"wrote {args.out}/results.csv, summary.json, rate_curve.png")
    return 0


def _write_csv(path, setting, fit, metrics):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "n", "replicate", "metric", "value", "status", "converged", "iterations"])
        for i, n in enumerate(fit.sizes):
            for r in range(fit.objective.shape[1]):
                status = STATUS_NAMES[int(fit.status[i, r])]
                row = [setting.name, int(n), r]
                tail = [status, bool(fit.converged[i, r]), int(fit.iterations[i, r])]
                w.writerow(row + ["objective", float(fit.objective[i, r])] + tail)
                for name, values in metrics.items():
                    w.writerow(row + [name, float(values[i, r])] + tail)
    os.replace(tmp, path)  # atomic: a reader never sees half a table


def _plot(path, setting, fit, metrics, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ns = fit.sizes.astype(float)
    for name, values in metrics.items():
        mean = np.nanmean(values, axis=1)
        s = summary["slopes"][name]
        line = ax.loglog(ns, mean, "o", label=f"{name}: slope {s['slope']:.2f} [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]")
        fitted = np.exp(np.polyfit(np.log(ns), np.log(mean), 1)[1]) * ns ** s["slope"]
        ax.loglog(ns, fitted, "-", color=line[0].get_color())
        ax.loglog(ns, mean[0] * (ns / ns[0]) ** -0.5, ":", color=line[0].get_color(), alpha=0.6)
    ax.set_xlabel("n")
    ax.set_ylabel("mean over replicates")
    ax.set_title(f"{setting.name}, k = {fit.info['k']} (dotted: n^-1/2)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
