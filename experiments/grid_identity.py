"""A grid sweep killed and resumed equals six separate sweeps (issue 15's target for `[grid]`).

The grid: softmax-ridge (Table 1, row 1), sigma in {0.1, 0.03, 0.01} x k_fit in {2, 3}, sizes 200, 400, 800,
4 replicates, default solver (32 near-truth starts when over-fitted). Steps, each a real `jaxmoe` process:

1. `jaxmoe sweep grid-identity.toml --out G`, killed with SIGKILL as soon as cell 3 (over-fitted: 32 starts per
   fit, the slower cells) has its first chunk file, so the kill lands inside a cell;
2. the same with `--resume` (the killed run's lock is taken over; finished chunks are kept);
3. six separate sweeps, `jaxmoe sweep --preset softmax-ridge --sigma S --k-fit K ... --out S/cell-i`;
4. every chunk of every cell compared array by array (fits, metrics, parameters) with the separate sweep's,
   and the grid's results.csv rows of each cell (without the cell and factor columns) with the separate
   results.csv.

    python experiments/grid_identity.py      # about 2-4 minutes on the 2-core CPU; writes results/grid_identity.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from jaxmoe.sweeps import load_sweep
from jaxmoe.sweeps.grid import cell_folder
from jaxmoe.sweeps.store import load_chunk

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [200, 400, 800]
REPLICATES = 4
GRID = f"""preset = "softmax-ridge"
[sweep]
sizes = {SIZES}
replicates = {REPLICATES}
[grid]
"data.sigma" = [0.1, 0.03, 0.01]
"model.k_fit" = [2, 3]
"""


def _jaxmoe(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxmoe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _rows(path: str, drop: int = 0) -> list[list[str]]:
    with open(path) as fh:
        return [row[drop:] for row in csv.reader(fh)]


def _killed_then_resumed(toml: str, out: str) -> dict:
    t0 = time.perf_counter()
    proc = _jaxmoe("sweep", toml, "--out", out, "--no-progress")
    target = os.path.join(out, "cells", "cell-003", "chunks")
    while not (os.path.isdir(target) and any(f.endswith(".npz") for f in os.listdir(target))):
        if proc.poll() is not None:
            raise SystemExit(f"the grid ended before it could be killed: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.perf_counter() - t0
    t1 = time.perf_counter()
    resumed = _jaxmoe("sweep", toml, "--out", out, "--resume", "--no-progress", "--json")
    stdout, stderr = resumed.communicate()
    require_ok(resumed.returncode, stderr)
    summary = json.loads(stdout)
    return {"killed_after_s": killed_after, "killed_rc": proc.returncode, "resume_s": time.perf_counter() - t1,
            "lock_taken_over": "taking over the lock" in stderr, "computed": summary["computed_chunks"],
            "reused": summary["reused_chunks"], "slopes": summary["slopes"]}


def require_ok(rc: int, stderr: str) -> None:
    if rc != 0:
        raise SystemExit(f"jaxmoe exited {rc}: {stderr[-2000:]}")


def _separate(grid, base: str, name: str) -> list[float]:
    walls = []
    for cell in grid.cells:
        t0 = time.perf_counter()
        proc = _jaxmoe("sweep", "--preset", "softmax-ridge", "--sizes", ",".join(map(str, SIZES)),
                       "--replicates", str(REPLICATES), "--sigma", str(cell.values["data.sigma"]),
                       "--k-fit", str(cell.values["model.k_fit"]), "--name", name,
                       "--out", os.path.join(base, cell.dirname), "--no-progress")
        _, stderr = proc.communicate()
        require_ok(proc.returncode, stderr)
        walls.append(time.perf_counter() - t0)
    return walls


def _compare(grid, gdir: str, sdir: str) -> list[dict]:
    out = []
    width = 1 + len(grid.factors)
    rows = _rows(os.path.join(gdir, "results.csv"))
    for cell in grid.cells:
        alone = os.path.join(sdir, cell.dirname)
        names = sorted(os.listdir(os.path.join(alone, "chunks")))
        equal = []
        for name in names:
            a, _ = load_chunk(os.path.join(alone, "chunks", name))
            b, _ = load_chunk(os.path.join(cell_folder(gdir, cell), "chunks", name))
            equal.append(a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a))
        mine = [r[width:] for r in rows[1:] if r[0] == str(cell.index)]
        out.append({"cell": cell.index, "values": cell.values, "chunks": len(names), "chunks_equal": all(equal),
                    "csv_rows": len(mine), "csv_equal": mine == _rows(os.path.join(alone, "results.csv"))[1:],
                    "config_hash_equal": json.load(open(os.path.join(alone, "config.json")))["hash"] == cell.config.hash})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=os.path.join(HERE, "results", "grid_identity.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        toml = os.path.join(tmp, "grid-identity.toml")
        with open(toml, "w") as fh:
            fh.write(GRID)
        grid = load_sweep(toml)
        gdir, sdir = os.path.join(tmp, "grid"), os.path.join(tmp, "separate")
        run = _killed_then_resumed(toml, gdir)
        walls = _separate(grid, sdir, grid.name)
        cells = _compare(grid, gdir, sdir)
    result = {"command": "python experiments/grid_identity.py", "sizes": SIZES, "replicates": REPLICATES,
              "grid": run, "separate_s": walls, "cells": cells,
              "identical": all(c["chunks_equal"] and c["csv_equal"] and c["config_hash_equal"] for c in cells)}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps({k: result[k] for k in ("identical", "separate_s")} | {"grid": {k: v for k, v in run.items()
                                                                                    if k != "slopes"}}, indent=2))


if __name__ == "__main__":
    main()
