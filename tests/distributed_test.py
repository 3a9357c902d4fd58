"""A sweep on Dask distributed and in shards (`jaxmoe.sweeps.distributed`, `store.Shard`): a worker killed with
SIGKILL mid-chunk costs that chunk only (recomputed elsewhere), a cluster without workers ends the run in one
line, shards of one folder merge into the whole sweep, and every bad option is one line with exit 2. Fake
chunks; that `--workers 2` gives the results.csv of one process with real fits is tests/cli_sweep_test.py's."""

import os
import signal
import threading
import time

import pytest

import jaxmoe
from jaxmoe import JaxMoEInputError
from jaxmoe.cli import main
from jaxmoe.sweeps import distributed as dist, runner, store
from jaxmoe.sweeps.store import load_chunk
from sweep_fakes import fake_run_chunk, slow_fake_run_chunk

TINY = 'preset = "softmax-ridge"\n[sweep]\nsizes = [100, 200, 400]\nreplicates = 3\n[solver]\nrestarts = 4\n'
RAW = {"preset": "softmax-ridge", "sweep": {"sizes": [100, 200, 400], "replicates": 2}}
GRID = {**RAW, "grid": {"data.sigma": [0.1, 0.03]}}


@pytest.fixture
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c, distributed.Client(c) as client:
        yield c.scheduler_address, client


def _kill_a_busy_worker(client, killed: dict) -> None:
    """SIGKILL the first worker seen running a jaxmoe chunk; record its pid and the chunk's key."""
    pids = client.run(os.getpid)
    deadline = time.time() + 60
    while time.time() < deadline:
        for address, keys in client.processing().items():
            busy = [k for k in keys if str(k).startswith("jaxmoe-chunk-")]
            if busy and address in pids:
                time.sleep(0.3)  # inside the chunk (each takes 1 s)
                os.kill(pids[address], signal.SIGKILL)
                killed.update(pid=pids[address], key=str(busy[0]))
                return
        time.sleep(0.05)


def test_a_killed_worker_costs_its_chunk_only(tmp_path, cluster, monkeypatch):
    address, client = cluster
    out = str(tmp_path / "dist")
    killed: dict = {}
    thread = threading.Thread(target=_kill_a_busy_worker, args=(client, killed))
    thread.start()
    result = dist.run_distributed(GRID, out, scheduler=address, chunk_fn=slow_fake_run_chunk, num_bootstrap=20)
    thread.join()
    assert killed and len(result.computed) == 6
    chunk = int(killed["key"].split("-")[3])
    cell = next(i for i, c in enumerate(jaxmoe.sweeps.grid_from_dict(GRID).cells) if c.config.hash in killed["key"])
    name = store.plan_chunks(jaxmoe.sweeps.grid_from_dict(GRID).cells[cell].config)[chunk].filename
    _, info = load_chunk(os.path.join(out, "cells", f"cell-{cell:03d}", "chunks", name))
    assert info["pid"] != killed["pid"]  # recomputed by another (or the restarted) worker
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    whole = str(tmp_path / "whole")
    jaxmoe.run_sweep(GRID, whole, num_bootstrap=20)
    assert open(os.path.join(out, "results.csv")).read() == open(os.path.join(whole, "results.csv")).read()


def test_shards_merge_into_the_whole_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    out, whole = str(tmp_path / "shards"), str(tmp_path / "whole")
    first = jaxmoe.run_sweep(GRID, out, shard="0/4", num_bootstrap=20)
    assert [len(r.computed) for r in first.cells] == [1, 1] and not first.summary["complete"]
    for i in (1, 2, 3):  # shards continue the folder without --resume (siblings write it at the same time)
        jaxmoe.run_sweep(GRID, out, shard=f"{i}/4", num_bootstrap=20)
    jaxmoe.run_sweep(GRID, whole, num_bootstrap=20)
    assert jaxmoe.sweeps.write_grid_report(out, num_bootstrap=20)["complete"]
    assert open(os.path.join(out, "results.csv")).read() == open(os.path.join(whole, "results.csv")).read()
    cell = os.path.join(out, "cells", "cell-000")
    assert sorted(f for f in os.listdir(cell) if f.startswith("provenance")) == \
        [f"provenance.shard-{i}-of-4.json" for i in range(4)]
    assert len(store.read_runs(cell)) == 4
    # a shard's lock is its own: shard 1 runs while shard 0's lock is held; a second shard 0 is refused
    single = str(tmp_path / "single")
    os.makedirs(single)
    with store.FolderLock(single, name=store.Shard(0, 2).lock_name):
        jaxmoe.run_sweep(RAW, single, shard="1/2", num_bootstrap=20)
        with pytest.raises(JaxMoEInputError, match="is in use by a running sweep"):
            jaxmoe.run_sweep(RAW, single, shard="0/2")


@pytest.mark.parametrize("argv, start", [
    (["--shard", "2/2"], "jaxmoe: error: argument --shard: '2/2': must be I/N with 0 <= I < N"),
    (["--shard", "x"], "jaxmoe: error: argument --shard: 'x': must be I/N"),
    (["--shard", "0/2", "--overwrite"], "jaxmoe: error: --overwrite='with --shard 0/2': a shard cannot discard"),
    (["--shard", "0/2", "--workers", "2"], "jaxmoe: error: --shard is for array jobs without a scheduler"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "jaxmoe: error: give one of --workers N"),
    (["--workers", "0"], "jaxmoe: error: argument --workers: '0': must be an integer >= 1"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, argv, start):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    assert main(["sweep", str(toml), "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1, err


def test_an_unreachable_scheduler_is_one_line_and_the_folder_untouched(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", "1s")
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    out = tmp_path / "out"
    assert main(["sweep", str(toml), "--out", str(out), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxmoe: error: --scheduler='tcp://127.0.0.1:1': cannot be reached") and err.count("\n") == 1
    assert not out.exists()


def test_a_cluster_without_workers_ends_the_run_in_one_line(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(dist, "POLL_SECONDS", 0.2)
    monkeypatch.setattr(dist, "NO_WORKERS_SECONDS", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None, silence_logs=40) as empty:
        with pytest.raises(JaxMoEInputError, match=r"^cluster='tcp://.*': the Dask cluster has had no workers "
                                                   r"for \d s .*the 0 chunks finished are saved"):
            dist.run_distributed(RAW, str(tmp_path / "out"), scheduler=empty.scheduler_address,
                                 chunk_fn=fake_run_chunk)
