"""Engine II, side by side: this checkout's engine against an older one, in one run, alternating.

    .venv/bin/python experiments/engine2_bench.py --old /tmp/old --repeats 3 --out experiments/results/engine2_bench.json

`--old` is a checkout of the engine to compare with (e.g. `git worktree add /tmp/old <commit>`); each
measurement is a fresh process (`PYTHONPATH` pointing at one engine or the other), the two engines alternating
so that a change in the machine's load hits both. Three measurements:

1. **CLI cold / warm**: `python -m jaxmoe sweep --preset softmax-ridge --sizes 500,1000 --replicates 4` in a
   new folder, wall time of the whole process; cold with an empty compilation-cache folder
   (`JAXMOE_CACHE_DIR`), warm with the folder the cold run filled (the old engine has no cache of its own:
   it is given `JAX_COMPILATION_CACHE_DIR` the same way, so "warm" is what it would get with one).
2. **Programs per curve**: `fit_curve(softmax-ridge, 7 sizes 10^2..10^5, 2 replicates, restarts=1)`:
   `programs_compiled` + `programs_loaded` (the new engine reports it; for the old one the same monitoring
   count is taken around the call).
3. **ns per LM sample-iteration per core** at n = 10^5 (softmax-ridge, over-fitted, 4 starts, 4 replicates):
   run seconds (wall minus compile waited for) x cores / sample-iterations.

Medians over `--repeats` runs; every raw run is in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)

CURVE = r"""
import json, os, sys, time
import jax
jax.config.update("jax_platforms", "cpu")
import jaxmoe
if hasattr(jaxmoe, "use_all_cores"):
    jaxmoe.use_all_cores()
from jax import monitoring
count = {"built": 0}
def on(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        count["built"] += 1
mode = sys.argv[1]
setting = jaxmoe.get_preset("softmax-ridge")
if mode == "programs":
    sizes, reps, kw = [100, 300, 1000, 3000, 10000, 30000, 100000], 2, dict(restarts=1)
else:
    sizes, reps, kw = [100000], 4, dict(restarts=4)
monitoring.register_event_duration_secs_listener(on)
t0 = time.perf_counter()
fit = jaxmoe.fit_curve(setting, sizes, reps, seed=0, **kw)
wall = time.perf_counter() - t0
info = fit.info
run = wall - info["compile_seconds"]
print("RESULT" + json.dumps(dict(
    wall=wall, run=run, compile_waited=info["compile_seconds"], programs_built=count["built"],
    programs_compiled=info.get("programs_compiled"), programs_loaded=info.get("programs_loaded"),
    devices=info["devices"], cores=os.cpu_count(), sample_iterations=info["sample_iterations"],
    executed=info["executed_sample_iterations"],
    ns_per_sample_iteration_per_core=run * 1e9 * os.cpu_count() / max(info["sample_iterations"], 1),
    converged=float(fit.converged_fraction), objective=fit.objective.tolist())))
"""


def _env(engine: str, cache: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=engine, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if cache is None:
        env["JAXMOE_COMPILATION_CACHE"] = "0"
    else:
        env["JAXMOE_CACHE_DIR"] = cache
        env["JAX_COMPILATION_CACHE_DIR"] = cache  # the old engine has no cache of its own
    return env


def cli_run(engine: str, cache: str) -> float:
    out = tempfile.mkdtemp(prefix="engine2-sweep-")
    cmd = [sys.executable, "-m", "jaxmoe", "sweep", "--preset", "softmax-ridge", "--sizes", "500,1000",
           "--replicates", "4", "--out", out, "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(engine, cache), capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: sweep failed:\n{proc.stderr[-2000:]}")
    return wall


def curve_run(engine: str, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CURVE, mode], env=_env(engine, None), capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: curve failed:\n{proc.stderr[-2000:]}")
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][6:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="checkout of the engine to compare with")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: cli, programs, ns")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "engine2_bench.json"))
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    engines = {"new": NEW, "old": os.path.abspath(args.old)}
    raw: dict = {name: {"cli_cold": [], "cli_warm": [], "programs": [], "ns": []} for name in engines}
    for _ in range(args.repeats):
        for name, path in engines.items():
            if "cli" not in skip:
                cache = tempfile.mkdtemp(prefix="engine2-cache-")
                raw[name]["cli_cold"].append(cli_run(path, cache))
                raw[name]["cli_warm"].append(cli_run(path, cache))
            if "programs" not in skip:
                raw[name]["programs"].append(curve_run(path, "programs"))
            if "ns" not in skip:
                raw[name]["ns"].append(curve_run(path, "ns"))
            print(name, {k: (v[-1] if v and not isinstance(v[-1], dict) else "") for k, v in raw[name].items()},
                  flush=True)
    summary = {}
    for name, r in raw.items():
        med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
        summary[name] = dict(
            cli_cold_wall_s=med(r["cli_cold"]), cli_warm_wall_s=med(r["cli_warm"]),
            programs_per_7_size_curve=[p["programs_built"] for p in r["programs"]],
            ns_per_sample_iteration_per_core=med([p["ns_per_sample_iteration_per_core"] for p in r["ns"]]),
            ns_run_seconds=med([p["run"] for p in r["ns"]]))
    result = dict(command=" ".join(sys.argv), cores=os.cpu_count(), summary=summary, raw=raw)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
