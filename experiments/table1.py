"""Table 1 of the paper, row by row, at full size (issue 4 item 5; issue 3's "a full curve per preset").

    .venv/bin/python experiments/table1.py fit    [--rows all] [--sizes ...] [--replicates 32] [--out DIR]
    .venv/bin/python experiments/table1.py report [--out DIR]

`fit` runs `fit_curve` once per row (the preset of that row, over-fitted k = k* + 1, near-truth starts,
best of 4 restarts, projected LM) and saves every fit to `DIR/<row>/fits.npz` + `meta.json`, written
atomically, one row at a time: a killed run loses at most the row in progress, and rows already saved are
skipped on the next `fit` (delete the folder to refit). `report` reads the saved fits, measures every fit
(regression L2 error, the row's Voronoi loss, exact-fitted and over-fitted parameter errors), and writes
`DIR/<row>/results.csv` (tidy), `DIR/<row>/summary.json`, `DIR/<row>/rate_curve.{png,pdf}` and
`DIR/table1.json`; `experiments/README.md` holds the table built from it.

Variants (`--variant`) change one thing of every row, e.g. `small-noise` (sigma = 0.001), to test whether
the asymptotic regime is reached on the size range.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

import jaxmoe
from jaxmoe.estimation.levenberg_marquardt import LMConfig
from jaxmoe.sweeps.store import atomic_write_bytes, atomic_write_json
from shared import committed_starts  # noqa: E402  (beside this script)
from table1_report import report  # noqa: E402  (reporting lives beside this script)

DEFAULT_SIZES = "100,300,1000,3000,10000,30000,100000"
VARIANTS = {
    "preset": lambda s: s,                                  # over-fitted, k = k* + 1, sigma = 0.1
    "exact-fitted": lambda s: s.replace(k_fit=s.k_star),    # k = k*: every cell exactly fitted
    "small-noise": lambda s: s.replace(sigma=0.001),        # sigma / sqrt(n) 100x smaller
}
# Over-fitted hierarchical fits need more iterations (experiments/README.md: 16% stop within 300).
MAX_ITER = {"hierarchical-ridge": 1000, "hierarchical-linear": 1000}
SMALL_NOISE_MAX_ITER = 1000  # at sigma = 0.001, 300 LM iterations stopped only 38% of over-fitted fits


def row_setting(name: str, variant: str) -> jaxmoe.Setting:
    return VARIANTS[variant](jaxmoe.get_preset(name))


def fit_row(name: str, variant: str, sizes, replicates: int, seed: int, out: str, restarts=None,
            max_iter=None, init_noise=None) -> None:
    setting = row_setting(name, variant)
    folder = os.path.join(out, name)
    if os.path.exists(os.path.join(folder, "meta.json")):
        print(f"{name}: already fitted, skipped", flush=True)
        return
    os.makedirs(folder, exist_ok=True)
    default = SMALL_NOISE_MAX_ITER if variant == "small-noise" else LMConfig().max_iter
    solver = jaxmoe.get_solver("lm", max_iter=max_iter or MAX_ITER.get(name, default))
    t0 = time.perf_counter()
    starts = committed_starts(setting.k_fit > setting.k_star)  # the committed rows' starts (the options override)
    fit = jaxmoe.fit_curve(setting, sizes, replicates, seed, solver=solver,
                           restarts=restarts or starts["restarts"],
                           init_noise=starts["init_noise"] if init_noise is None else init_noise)
    seconds = time.perf_counter() - t0
    leaves, treedef = jax.tree_util.tree_flatten_with_path(fit.params)
    arrays = {"param/" + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
    for field in ("sizes", "objective", "objective_truth", "iterations", "status", "converged"):
        arrays[field] = np.asarray(getattr(fit, field))
    atomic_write_bytes(os.path.join(folder, "fits.npz"), lambda fh: np.savez(fh, **arrays))
    meta = {"row": name, "variant": variant, "sigma": setting.sigma, "k": fit.info["k"], "k_star": setting.k_star,
            "replicates": replicates, "seed": seed, "sizes": [int(n) for n in sizes],
            "max_iter": solver.max_iter, "restarts": fit.info.get("restarts", restarts), "init_noise": fit.info.get("init_noise"), "seconds": seconds, "summary": fit.summary(),
            "jax": jax.__version__, "jaxmoe": jaxmoe.__version__, "device": str(jax.devices()[0]),
            "loadavg": os.getloadavg()}
    atomic_write_json(os.path.join(folder, "meta.json"), meta)  # last: its presence marks the row done
    print(json.dumps({"row": name, "seconds": round(seconds, 1), **fit.summary()}), flush=True)


def load_row(folder: str):
    """(setting, CurveFit-like namespace, meta) from a saved row."""
    with open(os.path.join(folder, "meta.json")) as fh:
        meta = json.load(fh)
    setting = row_setting(meta["row"], meta["variant"])
    data = np.load(os.path.join(folder, "fits.npz"))
    template = setting.fitted_model(meta["k"]).zeros()
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]]
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template),
                                          [data["param/" + p] for p in paths])
    fields = {f: data[f] for f in ("sizes", "objective", "objective_truth", "iterations", "status", "converged")}
    fit = argparse.Namespace(params=params, info={"k": meta["k"]}, **fields)
    return setting, fit, meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fit", "report"])
    parser.add_argument("--rows", default="all", help="comma-separated preset names, or all")
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--replicates", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restarts", type=int, default=None, help="default: 1 if k = k*, else 4 (the committed runs; fit_curve's own default is now 32)")
    parser.add_argument("--init-noise", type=float, default=None,
                        help="near-truth perturbation (default 0.1, the committed runs; fit_curve's own default for k > k* is now 0.3)")
    parser.add_argument("--max-iter", type=int, default=None, help="LM iteration limit (default: see MAX_ITER)")
    parser.add_argument("--variant", default="preset", choices=sorted(VARIANTS))
    parser.add_argument("--out", default=None, help="default experiments/results/table1[-<variant>]")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                   "table1" + ("" if args.variant == "preset" else "-" + args.variant))
    rows = jaxmoe.PRESET_NAMES if args.rows == "all" else args.rows.split(",")
    if args.command == "fit":
        try:
            sizes = [int(s) for s in args.sizes.split(",")]
        except ValueError:
            raise jaxmoe.JaxMoEInputError("--sizes", args.sizes, "must be comma-separated integers") from None
        for name in rows:  # every row name is checked before any fitting starts
            jaxmoe.get_preset(name)
        for name in rows:
            fit_row(name, args.variant, sizes, args.replicates, args.seed, out, args.restarts, args.max_iter,
                    args.init_noise)
        return 0
    return report(out, rows, load_row)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except jaxmoe.JaxMoEInputError as err:  # bad --rows / --sizes / --replicates: one line, nothing lost
        sys.exit(f"table1.py: error: {err}")
