"""How fit_curve's time grows with the study: time vs total work, small to the largest that fits this machine.

    .venv/bin/python experiments/scaling.py                  # all points (about 10 minutes on the 2-core CPU)
    .venv/bin/python experiments/scaling.py --points A,B      # a subset

softmax-ridge, k = k* + 1 = 3, fit_curve defaults (LM work queue, best of 4 near-truth starts, float64). Each
point is one `fit_curve` call in this process, cold (no persistent compilation cache): wall and CPU seconds,
the compile time it waited for, total work sum(n) x replicates, the LM work actually done (sample-iterations:
sum over every start of n x iterations), the process's peak resident memory during the call (VmHWM, reset
before it), and the chunking `memory_gib` chose. The last two points fit the same 10^6-sample study with the
default budget and with `memory_gib=0.05`: more, smaller chunks, a lower memory peak, the same fits.
Writes experiments/results/scaling.json.
"""

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

import jaxmoe
from jaxmoe.sweeps.store import atomic_write_json
from shared import committed_starts  # noqa: E402  (beside this script)

POINTS = {  # name: (sizes, replicates, memory_gib)
    "A": (np.logspace(2, 3, 3), 8, 2.0),
    "B": (np.logspace(2, 4, 5), 16, 2.0),
    "C": (np.logspace(2, 5, 7), 16, 2.0),
    "D": (np.logspace(2, 5, 7), 32, 2.0),
    "E": (np.array([1e6]), 4, 2.0),
    "F": (np.array([1e6]), 4, 0.05),
}


def peak_rss_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "scaling.json"))
    args = parser.parse_args()
    setting = jaxmoe.get_preset("softmax-ridge")
    jaxmoe.fit_curve(setting, [50], 2, seed=1, restarts=1)  # warm-up: one-off process costs
    rows, fits_by_point = [], {}
    for name in args.points.split(","):
        sizes, replicates, memory_gib = POINTS[name]
        sizes = np.unique(np.round(sizes).astype(int))
        load_start = os.getloadavg()
        reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        fit = jaxmoe.fit_curve(setting, sizes, replicates, seed=0, memory_gib=memory_gib, **committed_starts(True))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        info = fit.info
        row = dict(point=name, sizes=sizes.tolist(), replicates=replicates, memory_gib=memory_gib,
                   fits=int(fit.objective.size), work=int(info["work"]), wall_seconds=wall, cpu_seconds=cpu,
                   compile_wait_seconds=info["compile_seconds"], compile_total_seconds=info["compile_total_seconds"],
                   run_seconds=wall - info["compile_seconds"], sample_iterations=info["sample_iterations"],
                   executed_sample_iterations=info["executed_sample_iterations"], work_ratio=info["work_ratio"],
                   waste_ratio=info["waste_ratio"], chunk_sizes={str(k): v for k, v in info["chunk_sizes"].items()},
                   peak_rss_mib=peak_rss_mib(), converged_fraction=fit.converged_fraction,
                   loadavg_start=load_start, loadavg_end=os.getloadavg())
        row["ns_per_sample_iteration_run"] = row["run_seconds"] / row["sample_iterations"] * 1e9
        row["sample_iterations_per_second_run"] = row["sample_iterations"] / row["run_seconds"]
        rows.append(row)
        fits_by_point[name] = fit.objective
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if "E" in fits_by_point and "F" in fits_by_point:
        same = bool(np.array_equal(fits_by_point["E"], fits_by_point["F"]))
        close = float(np.max(np.abs(fits_by_point["E"] - fits_by_point["F"]) / fits_by_point["E"]))
        print(f"memory-bounded chunks, same fits: bitwise {same}, max relative difference {close:.1e}")
    else:
        same = close = None
    out = dict(command="experiments/scaling.py --points " + args.points,
               machine=dict(platform=platform.platform(), cpus=os.cpu_count(), jax=jax.__version__,
                            device=str(jax.devices()[0]), devices=jax.local_device_count()),
               rows=rows, chunked_same_fits_bitwise=same, chunked_max_relative_difference=close)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
