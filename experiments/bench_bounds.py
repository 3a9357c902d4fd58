"""Speed of the lower-bound lab (issue 14 target: a profile of 30 eps x 64 starts in <= 2 min per d = 1 row,
<= 10 min in d = 2, on the 2-core CPU).

    .venv/bin/python experiments/bench_bounds.py [--starts 64] [--iterations 200] [--rows ...] [--out FILE]

Per row: `inverse_bound` at 30 eps (1 to 1e-4, about 7 a decade) and 64 starts, timed cold (tracing and XLA
compilation included, as a user's first call) and warm (the same shapes again, another key: the compiled program is
reused); the per-eps start statuses and the local exponent are printed so a fast but failed profile cannot pass.
Run it alone: a busy 2-core machine slows every timing. Writes FILE (default experiments/results/lower_bound/bench.json).
"""

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from jaxmoe.bounds import START_STATUS, default_nodes, inverse_bound
from jaxmoe.presets import get_preset

sys.path.insert(0, os.path.dirname(__file__))
from own_truths import TRUTHS  # noqa: E402

# row -> (setting factory, loss, r)
ROWS = {"softmax-ridge": (lambda: get_preset("softmax-ridge"), "d1", None),
        "softmax-linear": (lambda: get_preset("softmax-linear"), "d2r", 1.0),
        "dts-nonlinear-router": (lambda: get_preset("dts-nonlinear-router"), "d4", None),
        "hierarchical-ridge": (lambda: get_preset("hierarchical-ridge"), "hierarchical", None),
        "own-softmax-tanh-d2": (TRUTHS["own-softmax-tanh-d2"][0], "d1", None)}
TARGET_SECONDS = {1: 120.0, 2: 600.0}


def time_row(name, starts, iterations):
    make, loss, r = ROWS[name]
    setting = make()
    eps = np.geomspace(1.0, 1e-4, 30)
    out = {"d": setting.d, "nodes_per_axis": default_nodes(setting.d), "eps": eps.size, "starts": starts,
           "iterations": iterations}
    for label, seed in (("cold", 0), ("warm", 1)):
        t = time.perf_counter()
        prof = inverse_bound(setting, loss=loss, r=r, eps=eps, starts=starts, iterations=iterations,
                             key=jax.random.PRNGKey(seed))
        out[f"{label}_seconds"] = round(time.perf_counter() - t, 1)
    counts = np.bincount(prof.start_status.ravel(), minlength=len(START_STATUS))
    out.update(status_counts=dict(zip(START_STATUS, counts.tolist())), exponent=prof.exponent,
               resolvable=int(prof.resolvable.sum()), max_quadrature_error=float(np.nanmax(prof.quadrature_error)),
               target_seconds=TARGET_SECONDS.get(setting.d), devices=len(jax.devices()))
    out["meets_target"] = out["cold_seconds"] <= out["target_seconds"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--out", default="experiments/results/lower_bound/bench.json")
    args = ap.parse_args()
    results = {}
    for name in args.rows.split(","):
        results[name] = time_row(name, args.starts, args.iterations)
        print(name, json.dumps(results[name]), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".tmp", "w") as fh:
        json.dump(results, fh, indent=1)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
