"""Wall time of one sweep three ways on this machine: one process, `--workers 2` (a local Dask cluster) and two
shards run at once (`--shard 0/2` and `--shard 1/2`, an array job without a scheduler); same results.csv.

The sweep: softmax-ridge, over-fitted (k = 3, 32 near-truth starts), sizes 300..5000 (5 chunks), 8 replicates.
Every run is a fresh `jaxmoe` process with a warm compilation cache (a first, untimed run fills it), so the
times compare the ways of running, not compiling; runs alternate, `--rounds` of each, median reported.

    python experiments/distributed_wall.py      # about 6 minutes on the 2-core CPU; results/distributed_wall.json
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
TOML = """preset = "softmax-ridge"
[sweep]
sizes = [300, 600, 1200, 2500, 5000]
replicates = 8
"""


def _run(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxmoe", "sweep", *args, "--no-progress", "--bootstrap", "200"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(err[-2000:])


def _timed(way: str, toml: str, out: str, env: dict) -> float:
    t0 = time.perf_counter()
    if way == "one_process":
        _wait([_run([toml, "--out", out], env)])
    elif way == "workers_2":
        _wait([_run([toml, "--out", out, "--workers", "2"], env)])
    else:  # two shards at once, then the report that merges them
        _wait([_run([toml, "--out", out, "--shard", f"{i}/2"], env) for i in range(2)])
        _wait([subprocess.Popen([sys.executable, "-m", "jaxmoe", "report", out, "--bootstrap", "200"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=os.path.join(HERE, "results", "distributed_wall.json"))
    args = parser.parse_args()
    ways = ("one_process", "workers_2", "shards_2")
    with tempfile.TemporaryDirectory() as tmp:
        toml = os.path.join(tmp, "wall.toml")
        with open(toml, "w") as fh:
            fh.write(TOML)
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAXMOE_CACHE_DIR=os.path.join(tmp, "cache"))
        _timed("one_process", toml, os.path.join(tmp, "warmup"), env)  # fills the compilation cache
        times: dict = {way: [] for way in ways}
        csv = {}
        for r in range(args.rounds):
            for way in ways:
                out = os.path.join(tmp, f"{way}-{r}")
                times[way].append(_timed(way, toml, out, env))
                with open(os.path.join(out, "results.csv")) as fh:
                    csv.setdefault(way, fh.read())
    result = {"command": "python experiments/distributed_wall.py", "cpu_count": os.cpu_count(), "seconds": times,
              "median_s": {way: statistics.median(t) for way, t in times.items()},
              "same_results_csv": len(set(csv.values())) == 1}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
