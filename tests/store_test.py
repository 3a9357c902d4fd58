"""`jaxmoe.sweeps.store`: atomic files and the sweep folder's lock (one running sweep per folder).

The lock is tested with direct store calls, and `run_sweep` with its fitting replaced by fake chunks (valid
chunk files, no fit): these tests compile nothing, so they take seconds. The one real process is a
`jaxmoe sweep` refused by a locked folder, which fits nothing either.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

import jaxmoe
from jaxmoe import JaxMoEInputError
from jaxmoe.cli import main
from sweep_fakes import fake_run_chunk
from jaxmoe.sweeps import runner, store
from jaxmoe.sweeps.store import LOCK_FILE, FolderLock, atomic_write_bytes, atomic_write_json

SIZES = (100, 200, 400)  # three chunks (one size each): enough for a slope in the report
ARGV = ["sweep", "--preset", "softmax-ridge", "--sizes", "100,200,400", "--replicates", "2", "--no-progress"]


def _config():
    return jaxmoe.preset_config("softmax-ridge").replace(sizes=list(SIZES), replicates=2)


def _lock_path(out) -> str:
    return os.path.join(str(out), LOCK_FILE)


def _write_lock(out, **record) -> None:
    os.makedirs(out, exist_ok=True)
    atomic_write_json(_lock_path(out), {"host": socket.gethostname(), "pid": os.getpid(),
                                        "started": "2024-01-01T00:00:00+00:00", "heartbeat_time": time.time(),
                                        "token": "someone-else", **record})


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)  # exited and reaped: no process has this pid (until the system reuses it)


# ---------------------------------------------------------------- atomic files
def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "f.json"

    def half(fh):
        fh.write(b'{"half": ')
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(str(path), half)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
    atomic_write_json(str(path), {"a": np.float32(1.5), "b": np.arange(3), "c": jax.numpy.ones(2)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [1.0, 1.0]}
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(str(path), lambda fh: (fh.write(b"new"), (_ for _ in ()).throw(KeyboardInterrupt)))
    assert json.loads(path.read_text())["a"] == 1.5 and [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ---------------------------------------------------------------- the lock
def test_lock_refuses_a_second_holder(tmp_path):
    with FolderLock(str(tmp_path)) as lock:
        record = json.loads(open(_lock_path(tmp_path)).read())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["token"] == lock.record["token"]
        with pytest.raises(JaxMoEInputError) as err:
            FolderLock(str(tmp_path)).acquire()
        text = str(err.value)
        assert text.startswith(f"out={str(tmp_path)!r}: is in use by a running sweep (host {socket.gethostname()}, "
                               f"pid {os.getpid()}, since {record['started']}); wait for it"), text
        assert "\n" not in text
        assert os.path.exists(_lock_path(tmp_path))  # the refused run did not remove the holder's lock
    assert not os.path.exists(_lock_path(tmp_path))


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid)  # fresh heartbeat: only the dead pid makes it stale
    lines = []
    with FolderLock(str(tmp_path), log=lines.append):
        assert json.loads(open(_lock_path(tmp_path)).read())["pid"] == os.getpid()
    assert len(lines) == 1 and "taking over" in lines[0] and f"pid {pid}" in lines[0] and "gone" in lines[0]
    assert not os.path.exists(_lock_path(tmp_path))


def test_lock_of_another_host_expires_with_its_heartbeat(tmp_path):
    _write_lock(tmp_path, host="elsewhere", pid=1, heartbeat_time=time.time() - 60)
    with pytest.raises(JaxMoEInputError, match="host elsewhere, pid 1"):
        FolderLock(str(tmp_path)).acquire()
    _write_lock(tmp_path, host="elsewhere", pid=1, heartbeat_time=time.time() - store.STALE_SECONDS - 5)
    lines = []
    with FolderLock(str(tmp_path), log=lines.append):
        pass
    assert len(lines) == 1 and "no heartbeat for 10 min" in lines[0]


def test_half_written_lock_counts_as_held_until_it_expires(tmp_path):
    open(_lock_path(tmp_path), "w").close()  # a run between creating the file and writing it
    with pytest.raises(JaxMoEInputError, match=r"host \?, pid \?"):
        FolderLock(str(tmp_path)).acquire()
    old = time.time() - store.STALE_SECONDS - 5
    os.utime(_lock_path(tmp_path), (old, old))
    with FolderLock(str(tmp_path), log=lambda line: None):
        assert json.loads(open(_lock_path(tmp_path)).read())["pid"] == os.getpid()


def _race(out, n=8) -> tuple[list, list]:
    """`n` threads acquire the lock of `out` at once; returns (holders, refusals)."""
    start, held, refused = threading.Barrier(n), [], []

    def take():
        lock = FolderLock(out, log=lambda line: None)
        start.wait()
        try:
            held.append(lock.acquire())
        except JaxMoEInputError as err:
            refused.append(str(err))

    threads = [threading.Thread(target=take) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for lock in held:
        lock.release()
    return held, refused


def test_one_holder_when_runs_start_together(tmp_path):
    held, refused = _race(str(tmp_path))
    assert len(held) == 1 and len(refused) == 7 and all("is in use" in r for r in refused)
    _write_lock(tmp_path, pid=_dead_pid())  # all find it stale at once: one takes it over
    held, refused = _race(str(tmp_path))
    assert len(held) == 1 and len(refused) == 7
    assert not os.path.exists(_lock_path(tmp_path)) and not os.path.exists(_lock_path(tmp_path) + ".takeover")


def test_heartbeat_and_lost_lock(tmp_path):
    with FolderLock(str(tmp_path), heartbeat_seconds=0.05) as lock:
        first = json.loads(open(_lock_path(tmp_path)).read())["heartbeat_time"]
        time.sleep(0.5)  # the background thread refreshes it meanwhile
        assert json.loads(open(_lock_path(tmp_path)).read())["heartbeat_time"] > first
        _write_lock(tmp_path, host="elsewhere", pid=7)  # taken over while this run was frozen
        with pytest.raises(JaxMoEInputError, match="taken over by another sweep .host elsewhere, pid 7"):
            lock.beat()
    assert json.loads(open(_lock_path(tmp_path)).read())["host"] == "elsewhere"  # its lock is not removed
    (tmp_path / "b").mkdir()
    with FolderLock(str(tmp_path / "b"), heartbeat_seconds=0.01) as lock:
        os.unlink(_lock_path(tmp_path / "b"))  # removed by hand
        time.sleep(0.1)
        assert not os.path.exists(_lock_path(tmp_path / "b"))  # the heartbeat does not recreate it
        with pytest.raises(JaxMoEInputError, match="its lock was removed or replaced"):
            lock.beat()


# ---------------------------------------------------------------- run_sweep holds it
def test_run_sweep_holds_the_lock_and_releases_it(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "out")
    seen = []

    def run_chunk(config, setting, chunk, errors_fn=None):
        assert json.loads(open(_lock_path(out)).read())["pid"] == os.getpid()
        with pytest.raises(JaxMoEInputError, match="is in use by a running sweep"):
            runner.run_sweep(config, out, resume=True)  # a second sweep into the folder, meanwhile
        if chunk.index == 1:  # a report of the running sweep: no lock needed, the lock is left alone
            assert main(["report", out, "--json", "--no-plots"]) == 0
            seen.append(json.loads(capsys.readouterr().out))
            assert os.path.exists(_lock_path(out))
        return fake_run_chunk(config, setting, chunk)

    monkeypatch.setattr(runner, "run_chunk", run_chunk)
    result = runner.run_sweep(_config(), out, report=True)
    assert result.computed == [0, 1, 2] and result.summary["complete"]
    assert not os.path.exists(_lock_path(out))
    assert seen[0]["chunks_done"] == 1 and not seen[0]["complete"]
    prov = json.loads(open(os.path.join(out, "provenance.json")).read())
    assert len(prov["runs"]) == 1 and prov["runs"][0]["computed_chunks"] == [0, 1, 2]  # the refused runs wrote none


@pytest.mark.parametrize("error", [RuntimeError("a fit failed"), KeyboardInterrupt()])
def test_lock_released_when_run_sweep_raises(tmp_path, monkeypatch, error):
    out = str(tmp_path / "out")

    def run_chunk(config, setting, chunk, errors_fn=None):
        if chunk.index == 1:
            raise error
        return fake_run_chunk(config, setting, chunk)

    monkeypatch.setattr(runner, "run_chunk", run_chunk)
    with pytest.raises(type(error)):
        runner.run_sweep(_config(), out, report=False)
    assert not os.path.exists(_lock_path(out))
    assert sorted(os.listdir(os.path.join(out, "chunks"))) == ["chunk-000-n100-100.npz"]  # saved, kept
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    assert runner.run_sweep(_config(), out, resume=True, report=False).reused == [0]


def test_concurrent_runs_of_one_config_compute_once(tmp_path, monkeypatch):
    """The reported bug: three sweeps of one config into one folder all computed everything and overwrote
    provenance.json. Now one computes; the others are refused before reading the folder."""
    out, start, results, refused = str(tmp_path / "out"), threading.Barrier(3), [], []

    def slow(config, setting, chunk, errors_fn=None):
        time.sleep(0.2)
        return fake_run_chunk(config, setting, chunk)

    monkeypatch.setattr(runner, "run_chunk", slow)

    def sweep():
        start.wait()
        try:
            results.append(runner.run_sweep(_config(), out, report=False))
        except JaxMoEInputError as err:
            refused.append(str(err))

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(refused) == 2 and all("is in use by a running sweep" in r for r in refused)
    prov = json.loads(open(os.path.join(out, "provenance.json")).read())
    assert len(prov["runs"]) == 1 and prov["runs"][0]["finished"]


# ---------------------------------------------------------------- the command line
def test_cli_sweep_into_a_locked_folder(tmp_path, capsys):
    out = str(tmp_path / "out")
    store.prepare_folder(out, _config())
    with FolderLock(out):
        # a real process: exit 2, one line, before any fit (the folder's files untouched, even with --overwrite)
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "jaxmoe", *ARGV, "--out", out, "--overwrite"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stdout == "", res.stderr
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("jaxmoe: error: out="), res.stderr
        assert f"is in use by a running sweep (host {socket.gethostname()}, pid {os.getpid()}" in res.stderr
        assert time.perf_counter() - t0 < 60
        assert sorted(os.listdir(out)) == ["chunks", "config.json", LOCK_FILE]
        assert main([*ARGV, "--out", out, "--resume"]) == 2  # in-process, --resume: refused the same way
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is in use by a running sweep" in err
