"""Issue 16, item 1: a Table 1 truth's metrics against n / sigma^2 (five noise levels sqrt(10) apart), the
collapse test and the onset next to the lower-bound lab's prediction, and (softmax-ridge) the stopping-rule
refinement check.

    .venv/bin/python experiments/effective_sample_size.py [--preset softmax-ridge] [--out DIR]

softmax-ridge (the default; DIR experiments/results/effective_sample_size):

Runs (or resumes) two grids with the CLI, `experiments/configs/effective-sample-size.toml` (10 cells x 5 sizes
x 64 replicates; 17 min on the 2-core CPU) and `experiments/configs/tolerance-refinement.toml` (sigma = 0.001,
the same data and starts fitted with the old absolute gtol 1e-9, the noise-scaled default 1e-13, and 100x
tighter with 3x the iterations; 3 min), then writes DIR/report.json and prints the tables of
experiments/effective_sample_size.md. `--preset dts-nonlinear-router` or `hierarchical-ridge` runs
`experiments/configs/effective-sample-size-PRESET.toml` (the same design at 32 replicates, 16 for
hierarchical-ridge; no refinement grid;
DIR experiments/results/effective_sample_size_PRESET). The predicted onsets are the conditioning diagnostic's
(experiments/results/lower_bound/conditioning.json), given for every metric but l2_error (they are statements
about parameters): for the over-fitted group the onset of the over-fitted inverse-bound profile in the row's
loss, for the exactly fitted group the Fisher onset 1 / lambda_min at the truth.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from jaxmoe.presets import get_preset
from jaxmoe.sweeps.effective_size import effective_size_report, format_effective_size, plot_effective_size, sigma_groups
from jaxmoe.sweeps.grid_report import load_grid_results

CONFIGS = {"softmax-ridge": {"grid": "experiments/configs/effective-sample-size.toml",
                             "refinement": "experiments/configs/tolerance-refinement.toml"},
           **{p: {"grid": f"experiments/configs/effective-sample-size-{p}.toml"}
              for p in ("dts-nonlinear-router", "hierarchical-ridge")}}
CONDITIONING = "experiments/results/lower_bound/conditioning.json"


def _run(config: str, out: str) -> None:
    flag = "--resume" if os.path.isdir(out) else "--overwrite"
    subprocess.run([sys.executable, "-m", "jaxmoe", "sweep", config, "--out", out, flag], check=True)


def _predicted(gres, preset: str) -> dict:
    """{group index: {metric: onset}} from the conditioning diagnostic, for the parameter metrics (not l2_error):
    the over-fitted group gets the onset of the row's inverse-bound profile (None where the profile has no
    power-law range), the exactly fitted group the Fisher onset 1 / lambda_min (the n / sigma^2 at which the
    exact-fitted estimator's worst direction has a standard deviation of one parameter unit)."""
    with open(CONDITIONING) as fh:
        record = json.load(fh)[preset]
    k_star = get_preset(preset).k_star
    return {g: {"*": record["onset"] if others.get("model.k_fit", k_star) > k_star else record["fisher_onset"],
                "l2_error": None} for g, (others, _) in enumerate(sigma_groups(gres))}


def refinement(out: str) -> dict:
    """Per size and metric, paired over fits: |log(metric / refined metric)| (median, max) for the old and the
    default tolerance, next to the spread of the refined metric across replicates (IQR of its log), and the
    objective's excess over the refined one in units of sigma^2 / n."""
    gres = load_grid_results(out)
    old, default, refined = gres.cells
    sigma = refined.config.spec["data"]["sigma"]
    report = {"sigma": sigma, "sizes": refined.sizes.tolist(), "labels": ["gtol 1e-9 (old, absolute)",
              "gtol 1e-13 (default, noise-scaled)", "gtol 1e-15, ftol 1e-14, 3000 iterations"], "cells": []}
    for res in (old, default, refined):
        ratios = {name: np.abs(np.log(v / refined.metrics[name])) for name, v in res.metrics.items()}
        report["cells"].append({
            "converged": np.mean(res.fits["converged"], axis=1).tolist(),
            "iterations_median": np.median(res.fits["iterations"], axis=1).tolist(),
            "objective_excess": np.median((res.fits["objective"] - refined.fits["objective"])
                                          / (sigma ** 2 / refined.sizes[:, None]), axis=1).tolist(),
            "metrics": {name: {"median_abs_log_ratio": np.median(r, axis=1).tolist(),
                               "max_abs_log_ratio": np.max(r, axis=1).tolist()} for name, r in ratios.items()}})
    report["spread_log_iqr"] = {name: (np.subtract(*np.percentile(np.log(v), [75, 25], axis=1))).tolist()
                                for name, v in refined.metrics.items()}
    return report


def _print_refinement(rep: dict) -> None:
    print(f"\nrefinement at sigma = {rep['sigma']:g}, sizes {rep['sizes']} (paired over the same data and starts)")
    for label, cell in zip(rep["labels"], rep["cells"]):
        print(f"  {label}: converged {cell['converged']}, median iterations {cell['iterations_median']}, "
              f"median objective excess over refined {['%.2g' % v for v in cell['objective_excess']]} sigma^2/n")
        for name, m in cell["metrics"].items():
            print(f"    {name:<14} median |log ratio| {['%.2g' % v for v in m['median_abs_log_ratio']]}, "
                  f"max {['%.2g' % v for v in m['max_abs_log_ratio']]}")
    print("  spread (IQR of log metric, refined):",
          {k: ['%.2g' % v for v in val] for k, val in rep["spread_log_iqr"].items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="softmax-ridge", choices=sorted(CONFIGS))
    ap.add_argument("--out", default=None, help="default experiments/results/effective_sample_size[_PRESET]")
    args = ap.parse_args()
    out = args.out or "experiments/results/effective_sample_size" + (
        "" if args.preset == "softmax-ridge" else "_" + args.preset)
    folders = {name: os.path.join(out, name) for name in CONFIGS[args.preset]}
    for name, config in CONFIGS[args.preset].items():
        _run(config, folders[name])
    gres = load_grid_results(folders["grid"])
    ess = effective_size_report(gres, predicted_onsets=_predicted(gres, args.preset))
    print(format_effective_size(ess))
    plot_effective_size(gres, ess, os.path.join(out, "effective_size"))
    report = {"preset": args.preset, "effective_sample_size": ess}
    if "refinement" in folders:
        report["refinement"] = rep = refinement(folders["refinement"])
        _print_refinement(rep)
    path = os.path.join(out, "report.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(report, fh, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
