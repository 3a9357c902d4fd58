"""What a change of the estimator did to the same fits: two `jaxmoe table1` (or grid / sweep) folders, fit by fit.

    python experiments/compare_fits.py OLD_DIR NEW_DIR [--out FILE.json]

Both folders must hold the same fits' data: the same rows, cells, sizes, replicates and seed (a cell's data
depend on (seed, n, replicate) only), so fit (cell, n, r) of one is fit (cell, n, r) of the other and only the
estimator differs (e.g. the over-fitted LM budget of issue 13). Per cell and overall: how many fits end lower,
within, or higher than before by 0.1 sigma^2 / n (the objective is the MSE, whose resolution is sigma^2 / n),
the converged fraction before and after, the mean iterations of the kept start, the work of every start (sum of
n x iterations, after / before), the median of the row's loss (the cell's first Voronoi metric) before and
after, how many fits' loss moves by more than 10% (and the largest factor, of the loss and of the L2 error), and
how the fits whose objectives differ by more than the tolerance had stopped before. Markdown on stdout; `--out` writes the same as JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

from jaxmoe.estimation.status import STATUS_NAMES

TOLERANCE = 0.1  # in units of sigma^2 / n


def _cells(folder: str) -> dict[str, str]:
    """{label: cell folder} for a table1 folder (row/cells/cell-XXX), a grid (cells/cell-XXX) or one sweep."""
    found = {}
    for chunks in sorted(glob.glob(os.path.join(folder, "**", "chunks"), recursive=True)):
        cell = os.path.dirname(chunks)
        found[os.path.relpath(cell, folder)] = cell
    return found


def _load(cell: str) -> tuple[dict, dict]:
    """(config, {array name: array over (n, r)}) of a cell's chunks, sizes ascending."""
    with open(os.path.join(cell, "config.json")) as fh:
        config = json.load(fh)["config"]
    parts = [np.load(f) for f in sorted(glob.glob(os.path.join(cell, "chunks", "*.npz")))]
    names = [k for k in parts[0].files if k in ("sizes", "objective", "converged", "iterations", "status",
                                                "metric/l2_error") or k.startswith("metric/voronoi")]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in names}
    order = np.argsort(arrays["sizes"])
    arrays = {k: v[order] for k, v in arrays.items()}
    # every start's work (sum of n x iterations over all jobs), from the chunks' fit_info
    arrays["sample_iterations"] = sum(json.loads(str(p["info"]))["fit_info"]["sample_iterations"] for p in parts)
    return config, arrays


def data_mismatch(old: str, new: str) -> str | None:
    """The first of the cells' `sweep`, `data`, `truth` tables that differ (then their fits are not the same
    fits), or None."""
    tables = []
    for cell in (old, new):
        with open(os.path.join(cell, "config.json")) as fh:
            tables.append(json.load(fh)["config"])
    return next((key for key in ("sweep", "data", "truth") if tables[0][key] != tables[1][key]), None)


def compare_cell(old: str, new: str) -> dict:
    config, a = _load(old)
    _, b = _load(new)
    sizes = a["sizes"].astype(float)
    resolution = config["data"]["sigma"] ** 2 / sizes[:, None]
    gap = (b["objective"] - a["objective"]) / resolution  # > 0: the new fit is worse
    loss = next((k for k in a if k.startswith("metric/voronoi")), None)
    moved = np.abs(np.log(b[loss] / a[loss])) if loss else np.zeros_like(gap)
    differ = np.abs(gap) > TOLERANCE
    return {
        "fits": int(gap.size),
        "lower": float(np.mean(gap < -TOLERANCE)), "within": float(np.mean(np.abs(gap) <= TOLERANCE)),
        "higher": float(np.mean(gap > TOLERANCE)), "largest_increase": float(np.max(gap)),
        "converged_old": float(np.mean(a["converged"])), "converged_new": float(np.mean(b["converged"])),
        "iterations_old": float(np.mean(a["iterations"])), "iterations_new": float(np.mean(b["iterations"])),
        "work_ratio": b["sample_iterations"] / a["sample_iterations"],
        "loss": loss and loss.split("/", 1)[1],
        "loss_median_old": loss and float(np.nanmedian(a[loss])), "loss_median_new": loss and float(np.nanmedian(b[loss])),
        # per fit: the loss moved by more than 10% (|log ratio| > 0.1), and the largest moves of the loss and of L2
        "loss_moved": int(np.sum(moved > 0.1)), "loss_max_log_ratio": float(np.nanmax(moved)),
        "l2_max_log_ratio": (float(np.nanmax(np.abs(np.log(b["metric/l2_error"] / a["metric/l2_error"]))))
                             if "metric/l2_error" in a and "metric/l2_error" in b else float("nan")),
        # how the fits whose objectives differ by more than the tolerance stopped before (OLD's statuses)
        "differ_old_status": {STATUS_NAMES[int(c)]: int(np.sum(a["status"][differ] == c))
                              for c in np.unique(a["status"][differ])},
        "changed": bool(not np.array_equal(a["objective"], b["objective"])),
        "k_fit": config["model"]["k_fit"], "k_star": config["model"]["k_star"], "sigma": config["data"]["sigma"],
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(results: dict) -> str:
    lines = ["| cell | k / k* | sigma | fits | lower / within / higher by 0.1 s²/n | largest increase (s²/n) | "
             "converged before -> after | kept start's mean iterations before -> after | work after / before | "
             "median loss before -> after | fits whose loss moves > 10% (max factor) | max factor L2 | "
             "stops before, of the fits beyond 0.1 s²/n |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        loss = "-" if r["loss"] is None else f"{r['loss']} {r['loss_median_old']:.3g} -> {r['loss_median_new']:.3g}"
        lines.append(f"| {label} | {r['k_fit']} / {r['k_star']} | {r['sigma']:g} | {r['fits']} | "
                     f"{_pct(r['lower'])} / {_pct(r['within'])} / {_pct(r['higher'])} | {r['largest_increase']:.2g} | "
                     f"{_pct(r['converged_old'])} -> {_pct(r['converged_new'])} | "
                     f"{r['iterations_old']:.0f} -> {r['iterations_new']:.0f} | {r['work_ratio']:.2f} | {loss} | "
                     f"{r['loss_moved']} ({np.exp(r['loss_max_log_ratio']):.3g}) | {np.exp(r['l2_max_log_ratio']):.3g} | "
                     f"{', '.join(f'{k} {v}' for k, v in r['differ_old_status'].items()) or '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--out", help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    old, new = _cells(args.old), _cells(args.new)
    if not old or set(old) != set(new):
        print(f"old={args.old}: must hold the same cells as new={args.new} (old {len(old)}, new {len(new)}, "
              f"shared {len(set(old) & set(new))})", file=sys.stderr)
        return 2
    for label in sorted(old):
        key = data_mismatch(old[label], new[label])
        if key is not None:
            print(f"new={new[label]}: must hold the same fits' data as old={old[label]} (their {key} tables "
                  "differ)", file=sys.stderr)
            return 2
    results = {label: compare_cell(old[label], new[label]) for label in sorted(old)}
    print(markdown(results))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
