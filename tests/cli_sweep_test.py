"""`jaxmoe sweep` / `jaxmoe report` end to end on a tiny sweep, kill -9 and --resume, and every bad input.

The sweeps run as real subprocesses (`python -m jaxmoe`) sharing one persistent XLA compilation cache
(JAX_COMPILATION_CACHE_DIR), so that each of the three compiled shapes is compiled once in this module;
the cache changes nothing in the results (compiled code is stored, not approximated).
"""

import csv
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxmoe
from jaxmoe.cli import build_parser, main
from jaxmoe.sweeps.progress import Progress
from jaxmoe.sweeps.store import LOCK_FILE, load_chunk, prepare_folder

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "configs" / "softmax-tanh.toml"

# The softmax-ridge preset's truth written out as a custom TOML truth, on a tiny design: 3 sizes x 3 replicates
# in 2 chunks (100 and 120 share a size bucket, 200 is alone). Named like the preset, so it is the same config
# as `--preset softmax-ridge --sizes 100,120,200 --replicates 3` (test_dry_run checks the hashes).
TINY = """
name = "softmax-ridge"

[model]
family = "softmax"
expert = "sigmoid"
d = 1
k_star = 2
k_fit = 3

[truth]
beta0 = [0.0, 0.0]
beta1 = [[4.0], [0.0]]
eta = { a = [[3.0], [-2.5]], b = [-1.0, -0.5] }

[data]
sigma = 0.1

[sweep]
sizes = [100, 120, 200]
replicates = 3
seed = 0
"""


def _cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "jaxmoe", *args], env=env, capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla-cache")))
    e.pop("JAX_ENABLE_X64", None)
    return e


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env):
    """B: killed with SIGKILL once its first chunk file exists, then --resume; A: uninterrupted (run after B,
    so B compiles cold and is certainly still running, compiling chunk 1, when killed)."""
    root = tmp_path_factory.mktemp("sweeps")
    toml = root / "tiny.toml"
    toml.write_text(TINY)
    a, b = root / "A", root / "B"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jaxmoe", "sweep", str(toml), "--out", str(b)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = b / "chunks"
    while not list(chunks.glob("chunk-000-*.npz")):
        assert proc.poll() is None, "the sweep ended before its first chunk was written"
        assert time.perf_counter() - t0 < 240, "no chunk after 240 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    killed_rc = proc.wait()
    after_kill = sorted(f.name for f in chunks.iterdir())
    (chunks / "chunk-001-n200-200.npz.x1y2.tmp").write_bytes(b"half a chunk")  # what a kill mid-write leaves
    resumed = _cli(["sweep", str(toml), "--out", str(b), "--resume", "--json", "--no-plots"], env)
    assert resumed.returncode == 0, resumed.stderr
    whole = _cli(["sweep", str(toml), "--out", str(a), "--json"], env)
    assert whole.returncode == 0, whole.stderr
    return dict(toml=toml, a=a, b=b, killed_rc=killed_rc, after_kill=after_kill, resumed_stderr=resumed.stderr,
                resumed=json.loads(resumed.stdout), whole=json.loads(whole.stdout))


def test_kill_and_resume_equals_uninterrupted(runs):
    assert runs["killed_rc"] == -signal.SIGKILL
    done = [n for n in runs["after_kill"] if n.endswith(".npz")]
    assert done == ["chunk-000-n100-120.npz"]  # killed mid-run, with chunk 0 complete
    assert runs["resumed"]["reused_chunks"] == [0] and runs["resumed"]["computed_chunks"] == [1]
    a, b = runs["a"], runs["b"]
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()
    assert not list((b / "chunks").glob("*.tmp"))  # the half-written file was discarded, not read
    # The killed run's lock (its pid is gone) was taken over with one warning line, and released at the end.
    takeover = [line for line in runs["resumed_stderr"].splitlines() if "taking over the lock" in line]
    assert len(takeover) == 1 and "its process is gone" in takeover[0], runs["resumed_stderr"]
    assert not (a / LOCK_FILE).exists() and not (b / LOCK_FILE).exists()
    for f in sorted((a / "chunks").glob("*.npz")):
        arrays_a, _ = load_chunk(f)
        arrays_b, _ = load_chunk(b / "chunks" / f.name)
        assert arrays_a.keys() == arrays_b.keys()
        for k in arrays_a:
            np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    for key in ("fits", "metrics", "config_hash"):
        assert runs["resumed"][key] == runs["whole"][key]
    prov = json.loads((b / "provenance.json").read_text())
    assert len(prov["runs"]) == 2 and prov["runs"][1]["resume"] and prov["runs"][1]["reused_chunks"]
    # B resumed with --no-plots: the same table and summary, no plots, and the file list says so
    assert not list(b.glob("rate_curves.*")) and (a / "rate_curves.png").exists()
    assert "rate_curves.png" not in runs["resumed"]["files"] and "rate_curves.png" in runs["whole"]["files"]


def test_two_workers_give_the_results_of_one_process(runs, env, tmp_path):
    """`--workers 2` (a local Dask cluster; its workers load the programs A compiled from the shared cache):
    the same results.csv and chunk arrays as the one-process run A, the chunk files written by the workers."""
    out = tmp_path / "workers"
    run = _cli(["sweep", str(runs["toml"]), "--out", str(out), "--workers", "2", "--no-plots"], env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "results.csv").read_bytes() == (runs["a"] / "results.csv").read_bytes()
    assert not list(out.glob("rate_curves.*"))  # --no-plots reaches the distributed report too
    for f in sorted((runs["a"] / "chunks").glob("*.npz")):
        arrays_a, _ = load_chunk(f)
        arrays_w, info = load_chunk(out / "chunks" / f.name)
        assert arrays_a.keys() == arrays_w.keys() and "host" in info  # a worker's file
        for k in arrays_a:
            np.testing.assert_array_equal(arrays_a[k], arrays_w[k], err_msg=k)


def test_a_grid_cell_equals_the_separate_sweep(runs, env, tmp_path):
    """A [grid] over TINY's seed: cell 0 (seed 0) is sweep A, chunk by chunk and row by row. (Seeds, not
    sigmas: each sigma is a program of its own today, a compile the cache of A does not hold.)"""
    toml = tmp_path / "grid.toml"
    toml.write_text(TINY.replace("seed = 0\n", "") + '\n[grid]\n"sweep.seed" = [0, 1]\n')
    out = tmp_path / "grid"
    run = _cli(["sweep", str(toml), "--out", str(out)], env)
    assert run.returncode == 0, run.stderr[-2000:]
    cell = out / "cells" / "cell-000"
    for f in sorted((runs["a"] / "chunks").glob("*.npz")):
        arrays_a, _ = load_chunk(f)
        arrays_c, _ = load_chunk(cell / "chunks" / f.name)
        assert arrays_a.keys() == arrays_c.keys()
        for k in arrays_a:
            np.testing.assert_array_equal(arrays_a[k], arrays_c[k], err_msg=k)
    grid_rows = list(csv.reader(open(out / "results.csv")))
    mine = [row[2:] for row in grid_rows[1:] if row[0] == "0"]  # less the cell and sweep.seed columns
    assert grid_rows[0][:2] == ["cell", "sweep.seed"] and mine == list(csv.reader(open(runs["a"] / "results.csv")))[1:]
    other, _ = load_chunk(out / "cells" / "cell-001" / "chunks" / f.name)
    assert not np.array_equal(other["objective"], arrays_a["objective"])  # seed 1: other data


def test_sweep_outputs(runs):
    a, summary = runs["a"], runs["whole"]
    rows = list(csv.DictReader(open(a / "results.csv")))
    metrics = ["l2_error", "voronoi_d1", "exact_error", "overfit_error", "overfit_error_weighted", "cell_mass"]
    assert len(rows) == 3 * 3 * len(metrics)
    assert list(rows[0]) == ["setting", "n", "replicate", "metric", "value", "status", "converged", "iterations",
                             "objective", "objective_truth", "objective_reference", "reached_minimum", "empty_cells", "on_boundary"]
    assert [r["metric"] for r in rows[:len(metrics)]] == metrics and {r["setting"] for r in rows} == {"softmax-ridge"}
    assert {r["status"] for r in rows} <= set(jaxmoe.STATUS_NAMES.values())
    assert all(float(r["objective"]) > 0 and int(r["iterations"]) > 0 for r in rows)
    assert summary["fits"]["count"] == 9 and sum(summary["fits"]["status_counts"].values()) == 9
    assert summary["complete"] and summary["chunks_done"] == 2 and summary["sizes"] == [100, 120, 200]
    # The summary's slope is the log-log slope of the table's values (nothing lost between the two).
    l2 = np.array([[float(r["value"]) for r in rows if r["metric"] == "l2_error" and r["n"] == str(n)]
                   for n in (100, 120, 200)])
    s = summary["metrics"]["l2_error"]
    assert s["slope"] == pytest.approx(jaxmoe.loglog_slope([100, 120, 200], l2.T).slope, rel=1e-12)
    assert s["ci"][0] <= s["slope"] <= s["ci"][1] and s["theory_slope"] == -0.5
    assert s["law_best_aic"] in ("power", "log", "polylog") and s["finite"] == [3, 3, 3]
    # "none" exactly when |dAIC| < 2: a coin toss is not a preference
    assert (s["law_preferred"] == "none") == (abs(s["delta_aic_slow_minus_power"]) < 2.0)
    assert s["law_preferred"] in ("none", s["law_best_aic"])
    assert summary["metrics"]["overfit_error"]["theory_slope"] == -0.25
    assert (a / "rate_curves.png").stat().st_size > 10_000
    assert (a / "rate_curves.pdf").read_bytes()[:4] == b"%PDF"
    stored = json.loads((a / "config.json").read_text())
    assert stored["hash"] == summary["config_hash"] and stored["config"]["sweep"]["sizes"] == [100, 120, 200]
    assert stored["config"]["solver"]["restarts"] == 32 and stored["config"]["solver"]["options"]["max_iter"] > 0
    assert (a / "config.source.toml").read_text() == runs["toml"].read_text()
    prov = json.loads((a / "provenance.json").read_text())["runs"][0]
    assert prov["jax"] == __import__("jax").__version__ and prov["finished"] and prov["computed_chunks"] == [0, 1]


def test_report_full_and_partial(runs, tmp_path, capsys):
    assert main(["sweep", str(runs["toml"]), "--out", str(runs["a"])]) == 2  # same config, no --resume
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main(["report", str(runs["a"]), "--json", "--no-plots"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"] == runs["whole"]["metrics"]
    assert main(["report", str(runs["a"])]) == 0
    text = capsys.readouterr().out
    assert "l2_error" in text and "converged" in text and "rate_curves.pdf" in text
    part = tmp_path / "part"
    shutil.copytree(runs["a"], part)
    (part / "chunks" / "chunk-001-n200-200.npz").unlink()
    assert main(["report", str(part), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert not summary["complete"] and summary["chunks_done"] == 1 and summary["fits"]["count"] == 6
    assert summary["metrics"]["l2_error"]["slope"] is None and "at least 3" in summary["metrics"]["l2_error"]["note"]


def test_dry_run(tmp_path, capsys):
    assert main(["sweep", str(EXAMPLE), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [c["sizes"] for c in plan["chunks"]] == [[n] for n in (300, 600, 1200, 2500, 5000, 10000, 20000)]
    assert plan["config"]["model"]["expert"] == "tanh" and plan["config"]["solver"]["restarts"] == 32
    # A preset with overrides is the same config as its truth written out in TOML (sizes in any order).
    assert main(["sweep", "--preset", "softmax-ridge", "--sizes", "200,100,120", "--replicates", "3",
                 "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hash"] == jaxmoe.load_config(_toml(tmp_path, TINY)).hash
    # Successive halving from the command line: written into the solver table (and so the hash) when on.
    assert main(["sweep", "--preset", "softmax-ridge", "--prune-at", "300", "--prune-keep", "4", "--dry-run",
                 "--json"]) == 0
    solver = json.loads(capsys.readouterr().out)["config"]["solver"]
    assert (solver["prune_at"], solver["prune_keep"]) == (300, 4)


def test_progress_bar_eta():
    stream = io.StringIO()
    bar = Progress([100.0, 200.0, 400.0], enabled=True, stream=stream)
    assert bar.eta() is None
    bar.update(seconds=12.0, compile_seconds=10.0, label="n = 100")
    # ETA = 2 chunks x 10 s of compiling + (200 + 400) work x (2 s / 100 work)
    assert bar.eta() == pytest.approx(2 * 10.0 + 600 * 0.02)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "1/3 chunks" in lines[1] and "ETA 0:32" in lines[1]
    quiet = io.StringIO()
    Progress([1.0], enabled=False, stream=quiet).update(1.0, 0.5)
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing fitted
def _one_line_error(capsys, argv, *needles):
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxmoe: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert time.perf_counter() - t0 < 20  # refused before any fitting


def _toml(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bad_inputs(tmp_path, capsys):
    out = str(tmp_path / "out")
    _one_line_error(capsys, ["sweep", "--preset", "nope", "--out", out], "preset='nope'", "softmax-ridge")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, "name = 'x'\n[model\nfamily = 1\n"), "--out", out],
                    "is not valid TOML", "line 2")
    _one_line_error(capsys, ["sweep", str(tmp_path / "missing.toml")], "no such file")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--k-fit", "1", "--out", out],
                    "model.k_fit=1", "must be >= k_star = 2")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, TINY.replace("k_fit = 3", "k_fit = 1")), "--out", out],
                    "model.k_fit=1")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, TINY.replace("[100, 120", "[-100, 120")), "--out", out],
                    "sweep.sizes=[-100, 120, 200]", "integers >= 1")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--sizes=-5,100", "--out", out], "--sizes=[-5, 100]")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--sizes", "100,abc"], "comma-separated integers")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, TINY.replace("sigma = 0.1", "sigma = -0.1")), "--out", out],
                    "data.sigma=-0.1", ">= 0")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--sigma=-0.1"], "--sigma", ">= 0")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, TINY.replace("k_fit = 3", "k_fit = 3\ncolour = 1"))],
                    "model.colour=1", "unknown key")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, TINY.replace("[[4.0], [0.0]]", "[[4.0], [1.0]]"))],
                    "A.3 needs the last atom's gate to be zero")
    _one_line_error(capsys, ["sweep", _toml(tmp_path, TINY.replace('"sigmoid"', '"sigmoidal"'))],
                    "model.expert='sigmoidal'", "must be one of")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--prune-at=-1"], "solver.prune_at=-1",
                    "integer >= 0")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--prune-at", "9", "--solver", "adam"],
                    "solver.prune_at=9", "needs the work queue")
    _one_line_error(capsys, ["sweep"], "give one of")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--resume", "--overwrite", "--out", out],
                    "choose one")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(capsys, ["sweep", "--preset", "softmax-ridge", "--out", str(blocker / "sub")],
                    "is not a writable folder")
    _one_line_error(capsys, ["report", str(tmp_path / "nowhere")], "no such folder")
    _one_line_error(capsys, ["report", str(tmp_path)], "not a jaxmoe sweep folder")


def test_folder_rules(tmp_path, capsys):
    """Another config's folder is refused naming what differs; this config's needs --resume; foreign files
    without config.json are not clobbered; --overwrite discards only a sweep's own files."""
    toml = _toml(tmp_path, TINY)
    out = tmp_path / "out"
    prepare_folder(str(out), jaxmoe.load_config(toml))  # a folder holding this config (no chunk yet)
    _one_line_error(capsys, ["sweep", toml, "--sizes", "100,120,400", "--out", str(out), "--resume"],
                    "holds a sweep of another config", "sweep.sizes: [100, 120, 200] vs [100, 120, 400]")
    _one_line_error(capsys, ["sweep", toml, "--seed", "1", "--out", str(out), "--resume"], "sweep.seed: 0 vs 1")
    _one_line_error(capsys, ["sweep", toml, "--out", str(out)], "already holds this sweep (0 of 2 chunks done)",
                    "--resume")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("mine\n")
    (foreign / "notes.txt").write_text("keep me\n")
    _one_line_error(capsys, ["sweep", toml, "--out", str(foreign)], "no config.json", "results.csv")
    prepare_folder(str(foreign), jaxmoe.load_config(toml), overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me\n" and not (foreign / "results.csv").exists()


def test_one_line_error_in_a_real_process(env, tmp_path):
    res = _cli(["sweep", _toml(tmp_path, "[model\n")], env)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "is not valid TOML" in res.stderr and "Traceback" not in res.stderr


def test_readme_commands_parse():
    """Every `jaxmoe ...` line of README's command-line block parses, and the files it names exist."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Command line\n.*?```\n(.*?)```", text, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("jaxmoe ")]
    assert len(lines) >= 5 and any("--resume" in line for line in lines) and any(" report " in line for line in lines)
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        if getattr(args, "config", None):
            assert (ROOT / args.config).exists(), args.config
