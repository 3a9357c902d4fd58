"""How wide a work queue, and how long a sample block, on this machine's default device (GPU or CPU)?

    .venv/bin/python experiments/accelerator_probe.py --lanes 32,128,448 --blocks 512,8192,full --memory-gib 40

The engine's defaults (2 lanes per CPU core, normal equations accumulated over 512-sample blocks) were
measured on the 2-core CPU. On an accelerator one lane is far too little work per kernel and a 512-sample
block loop is 200 sequential steps at n = 10^5; this script times the standard bench workload (softmax-ridge,
k = k* + 1, sizes log-spaced 10^2..10^5, best of 4 near-truth starts) for each (block, lanes) pair, and checks
that every pair gives the same fits. `full` = one block (unblocked normal equations).
Writes one JSON line per pair to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxmoe  # noqa: E402
from jaxmoe.sweeps.store import atomic_write_json  # noqa: E402
from shared import block_size, committed_starts, positive_ints  # noqa: E402  (beside this script)



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="softmax-ridge")
    parser.add_argument("--sizes", type=int, default=7, help="number of log-spaced sizes in [10^2, max-size]")
    parser.add_argument("--max-size", type=float, default=1e5)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--lanes", type=positive_ints, default="32,128,448")
    parser.add_argument("--blocks", type=lambda text: [block_size(v) for v in text.split(",")], default="512,8192,full",
                        help="comma list of samples per normal-equation block ('full': one block)")
    parser.add_argument("--memory-gib", type=float, default=2.0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "accelerator_probe.json"))
    args = parser.parse_args()
    setting = jaxmoe.get_preset(args.preset)
    sizes = np.unique(np.round(np.logspace(2, np.log10(args.max_size), args.sizes)).astype(int))
    device = jax.devices()[0]
    head = dict(device=f"{device.platform}:{getattr(device, 'device_kind', '')}", jax=jax.__version__,
                devices=jax.device_count(), cpu_count=os.cpu_count(), preset=args.preset, sizes=sizes.tolist(),
                replicates=args.replicates, memory_gib=args.memory_gib)
    print(json.dumps(head), flush=True)
    jaxmoe.fit_curve(setting, [50], 2, seed=1, restarts=1)  # one-off backend start-up, not timed
    rows, reference = [], None
    for block in args.blocks:
        for lanes in args.lanes:
            t0 = time.perf_counter()
            fit = jaxmoe.fit_curve(setting, sizes, args.replicates, seed=0, lanes=lanes, memory_gib=args.memory_gib,
                                   block_size=block, **committed_starts(True))
            wall = time.perf_counter() - t0
            info = fit.info
            if reference is None:
                reference = fit.objective
            gap = np.abs(fit.objective - reference) / reference
            row = dict(block="full" if block == 0 else block, lanes=lanes, lanes_used=[b.get("lanes") for b in info["buckets"]], wall=wall,
                       compile_waited=info["compile_seconds"], compile_total=info["compile_total_seconds"],
                       run=wall - info["compile_seconds"], work_ratio=info["work_ratio"],
                       sample_iterations=info["sample_iterations"],
                       ns_per_sample_iteration=1e9 * (wall - info["compile_seconds"]) / info["sample_iterations"],
                       converged=fit.converged_fraction, max_rel_objective_gap_vs_first=float(np.max(gap)),
                       per_bucket_run={str(b["length"]): b.get("run_seconds") for b in info["buckets"]})
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(args.out, dict(head, rows=rows))


if __name__ == "__main__":
    main()
