r"""The sweep folder and its files: layout, atomic writes, chunk files, folder rules, provenance and the lock.

`runner` (fitting) and `report` (tables, plots) both read and write a sweep folder through this module, and
this module imports neither of them: the layering is config -> store -> report -> runner.

**Chunk.** In a sweep, a *chunk* is one size bucket x all replicates: the sorted sizes grouped by
`bucket_sizes(sizes, solver.bucket_ratio)`, exactly as `fit_curve` groups them, one `fit_curve` call and one
file per chunk (`plan_chunks`). (Inside `fit_curve`, `jaxmoe.estimation.curve` also says "chunk", for a batch
of fits within one bucket sized to memory; a sweep's chunk is never a part of a bucket.)

**Folder layout** (`DIR`):

- `config.json`: the normalised config (every default written out) and its hash; `config.source.toml`: the
  file it came from, if any;
- `chunks/chunk-XXX-nA-B.npz`: per chunk (index XXX, sizes A..B), every fit's `FIT_FIELDS`, its metrics
  (`metric/NAME`) and parameters (`param/PATH`, PATH by `key_name`), with the config hash, timings and a
  sha256 of the arrays (`chunk_checksum`), verified when read: a truncated, corrupted or altered chunk file is
  unreadable, recomputed by a resumed sweep (with a warning line) and refused by a report (one line naming it);
- `provenance.json`: versions, device, CPU count, command line and timings of every run (a resumed sweep
  has several), rewritten atomically as each chunk finishes;
- `results.csv`, `results.parquet`, `summary.json`, `rate_curves.png`, `rate_curves.pdf`: the report
  (`report.write_report`);
- `sweep.lock`: present while a sweep runs in the folder (see below).

**Atomic files.** Every file is written to a temporary file in the same folder, fsync-ed, then
`os.replace`d, so a file is complete or absent whenever the process dies; `*.tmp` left in `chunks/` by a
killed run are deleted by the next one.

**Lock.** One sweep at a time per folder: `claim_folder` creates `sweep.lock` with O_CREAT | O_EXCL (atomic:
of two runs started together, one gets it) holding host, pid, start time and a heartbeat, refreshed as each
chunk finishes and every `HEARTBEAT_SECONDS` by a background thread (in place, in the file checked to hold
this run's token, so a late refresh cannot clobber a lock taken over meanwhile). A second sweep into the
folder is refused at once (`JaxMoEInputError`, exit 2 in the CLI). A lock is *stale*, and taken over with a warning
line, when it was written on this host by a process that is gone, or when its heartbeat is older than
`STALE_SECONDS` (10 minutes; how a lock from another host, or from a frozen process, expires; it assumes the
hosts' clocks agree to within minutes). The lock is released (deleted) when the sweep ends, by an
exception or Ctrl-C too; after `kill -9` it stays, and the next run takes it over. Reading a folder
(`jaxmoe report`) takes no lock, so a running sweep can be reported at any time.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jaxlib
import numpy as np

from jaxmoe.validation import JaxMoEInputError, require
from jaxmoe.estimation.plan import bucket_sizes
from jaxmoe.sweeps.config import SweepConfig, differences

__all__ = [
    "OUTPUT_FILES", "CHUNK_DIR", "LOCK_FILE", "FIT_FIELDS", "STALE_SECONDS", "HEARTBEAT_SECONDS",
    "ChunkPlan", "plan_chunks", "Shard", "ONE_SHARD", "parse_shard", "chunk_filename", "key_name", "param_field",
    "atomic_write_bytes", "atomic_write_json", "ChunkChecksumError", "chunk_checksum", "save_chunk", "load_chunk",
    "completed_chunks",
    "now", "check_modes", "check_shard_modes", "make_folder", "read_folder_config", "clear_outputs", "check_folder",
    "prepare_folder",
    "environment", "read_runs", "Provenance", "FolderLock", "read_lock", "claim_folder",
]

OUTPUT_FILES = ("config.json", "config.source.toml", "provenance.json", "results.csv", "results.parquet",
                "summary.json", "rate_curves.png", "rate_curves.pdf")
CHUNK_DIR = "chunks"
LOCK_FILE = "sweep.lock"
# Per-fit arrays stored in a chunk (besides the metrics and parameters), indexed [size, replicate].
FIT_FIELDS = ("objective", "objective_truth", "objective_reference", "reached_minimum", "iterations", "status",
              "converged", "empty_cells")
STALE_SECONDS = 600.0  # a lock whose heartbeat is older than this is taken over
SHARD_PROVENANCE = "provenance.shard-*.json"  # per-shard provenance (`Shard`), cleared with the outputs
HEARTBEAT_SECONDS = 60.0  # how often a running sweep refreshes its lock, besides after each chunk
_GUARD_SECONDS = 60.0  # a takeover guard older than this was left by a process killed while taking over


# ---------------------------------------------------------------- the chunk plan and its files
class ChunkPlan(NamedTuple):
    """One chunk: its position, its sizes (one bucket), number of fits and work (fits x padded length)."""

    index: int
    sizes: tuple[int, ...]
    fits: int
    work: int

    @property
    def filename(self) -> str:
        return chunk_filename(self.index, self.sizes)


def chunk_filename(index: int, sizes: tuple[int, ...]) -> str:
    """`chunk-XXX-nA-B.npz`: the chunk's index and its smallest and largest size."""
    return f"chunk-{index:03d}-n{sizes[0]}-{sizes[-1]}.npz"


def plan_chunks(config: SweepConfig) -> list[ChunkPlan]:
    """The chunks of a sweep: `fit_curve`'s size buckets, in increasing n. (The plan decides which chunk
    files a folder holds, so it lives with the files: `report` needs it without `runner`.)"""
    buckets = bucket_sizes(np.asarray(config.sizes), config.spec["solver"]["bucket_ratio"])
    r = config.replicates
    return [ChunkPlan(i, tuple(int(n) for n in b), len(b) * r, len(b) * r * int(max(b))) for i, b in enumerate(buckets)]


class Shard(NamedTuple):
    """Shard `index` of `count` (`--shard I/N`): the sweep's chunks (a grid's (cell, chunk) pairs, cell by cell)
    at positions p with p % count == index. Shards of one folder run at once by design, each with its own lock
    (`sweep.shard-I-of-N.lock`) and provenance file; `ONE_SHARD` (0 of 1) is a whole sweep, with `sweep.lock`
    and `provenance.json`."""

    index: int = 0
    count: int = 1

    def takes(self, position: int) -> bool:
        return position % self.count == self.index

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def lock_name(self) -> str:
        return LOCK_FILE if self.whole else f"sweep.shard-{self.index}-of-{self.count}.lock"

    @property
    def provenance_name(self) -> str:
        return "provenance.json" if self.whole else f"provenance.shard-{self.index}-of-{self.count}.json"


ONE_SHARD = Shard()


def parse_shard(text, field: str = "--shard") -> Shard:
    """`"I/N"` (or a `Shard`, or an (I, N) pair) -> `Shard(I, N)`, 0 <= I < N."""
    if isinstance(text, Shard):
        return text
    try:
        index, count = (int(part) for part in (text.split("/") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        index, count = -1, 0
    require(0 <= index < count, field, text, "must be I/N with 0 <= I < N (this process runs shard I of N)")
    return Shard(index, count)


def key_name(key) -> str:
    """One step of a JAX pytree path as plain text (a field name, dict key or sequence index)."""
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def param_field(path) -> str:
    """The chunk-file field of a parameter leaf at pytree `path`: `param/eta/a`, ..."""
    return "param/" + "/".join(key_name(k) for k in path)


# ---------------------------------------------------------------- atomic files
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


def atomic_write_bytes(path: str, write: Callable) -> None:
    """Write a file so that it is either complete or absent: `write(fh)` into a temporary file in the same
    folder, fsync, `os.replace` (atomic on POSIX), then fsync the folder so the rename itself survives a crash.
    If `write` raises, the temporary file is removed and `path` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - some file systems cannot fsync a folder
        pass


def atomic_write_json(path: str, obj: Any) -> None:
    """`obj` as indented JSON, atomically; NumPy scalars and NumPy / JAX arrays are written as numbers / lists."""
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(obj, indent=2, default=_json_default) + "\n").encode()))


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):  # NumPy and JAX arrays
        return np.asarray(obj).tolist()
    raise TypeError(type(obj).__name__)


class ChunkChecksumError(ValueError):
    """A chunk file whose arrays do not match the checksum in its info (damaged after it was written)."""


def chunk_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 (hex) of a chunk's arrays: for each array, by name, its name, dtype, shape and bytes (C order)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_chunk(path: str, arrays: dict[str, np.ndarray], info: dict) -> None:
    """A chunk file: its arrays and its `info` (a JSON string field) with the arrays' `chunk_checksum` added
    (`checksum`), atomically."""
    payload = dict(arrays)
    payload["info"] = np.asarray(json.dumps({**info, "checksum": chunk_checksum(arrays)}, default=_json_default))
    atomic_write_bytes(path, lambda fh: np.savez(fh, **payload))


def load_chunk(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """A chunk file's arrays and info; raises on a damaged file: unreadable, or arrays that do not match the
    `checksum` of its info (`ChunkChecksumError`). A file without a checksum (written before chunk files had
    one) is read but not verified."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "info"}
        info = json.loads(str(data["info"]))
    if not isinstance(info, dict):
        raise ValueError("its info is not a JSON object")
    if "checksum" in info and info["checksum"] != chunk_checksum(arrays):
        raise ChunkChecksumError("checksum mismatch")
    return arrays, info


def _damage(err: Exception) -> str:
    """Why a chunk file is unreadable, in a few words."""
    return "checksum mismatch" if isinstance(err, ChunkChecksumError) else type(err).__name__


def completed_chunks(out: str, config: SweepConfig, plan: list[ChunkPlan] | None = None,
                     warn=None, strict: bool = False) -> dict[int, tuple[dict, dict]]:
    """The chunk files of `out` that belong to `config` and are readable, by chunk index. A file whose hash
    or sizes do not match the plan is refused (never mixed in). An unreadable one (truncated, corrupted, or
    failing its checksum) is skipped, to be recomputed, with a line to `warn`; with `strict` (a report) it is
    refused instead: one line naming the file."""
    plan = plan_chunks(config) if plan is None else plan
    done = {}
    for chunk in plan:
        path = os.path.join(out, CHUNK_DIR, chunk.filename)
        if not os.path.exists(path):
            continue
        try:
            arrays, info = load_chunk(path)
        except Exception as err:  # noqa: BLE001 - a damaged file is recomputed, not trusted
            # the file relative to the folder as the value (never shortened), the folder in the text
            require(not strict, "chunk", os.path.join(CHUNK_DIR, chunk.filename), f"is unreadable ({_damage(err)}) "
                    f"in {out}: remove it, or run the sweep again with --resume to recompute it")
            if warn:
                warn(f"{path} is unreadable ({_damage(err)}); it will be recomputed")
            continue
        require(info.get("config_hash") == config.hash and tuple(info.get("sizes", ())) == chunk.sizes,
                "chunk", path, f"belongs to another config (hash {info.get('config_hash')}, this one {config.hash}): "
                "remove it or use another --out")
        done[chunk.index] = (arrays, info)
    return done


# ---------------------------------------------------------------- the folder rules
def now() -> str:
    """The time now, UTC, ISO 8601 to the second (what the folder's files record)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def check_modes(resume: bool, overwrite: bool) -> None:
    require(not (resume and overwrite), "--resume/--overwrite", "both", "choose one: continue the sweep or discard it")


def check_shard_modes(shard: Shard, overwrite: bool) -> None:
    require(shard.whole or not overwrite, "--overwrite", f"with --shard {shard.index}/{shard.count}",
            "a shard cannot discard a folder its sibling shards are writing; clear it once before the array job")


def make_folder(out: str) -> None:
    """Create `out` if needed and check that files can be created in it."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".jaxmoe-write-test-", delete=True)
        probe.close()
    except OSError as err:
        raise JaxMoEInputError("out", out, f"is not a writable folder ({err.strerror or type(err).__name__})") from None


def read_folder_config(out: str) -> dict | None:
    """`config.json` of a sweep folder, or None when there is none."""
    path = os.path.join(out, "config.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            stored = json.load(fh)
        assert isinstance(stored, dict) and "hash" in stored and "config" in stored
    except Exception:  # noqa: BLE001
        raise JaxMoEInputError("out", out, "has a config.json that is not a jaxmoe sweep config "
                               "(use another --out, or --overwrite to discard it)") from None
    return stored


def clear_outputs(out: str) -> None:
    """Remove the files a sweep writes, and only those (the lock stays: whoever clears holds it)."""
    for name in OUTPUT_FILES:
        path = os.path.join(out, name)
        if os.path.isfile(path):
            os.unlink(path)
    for path in glob.glob(os.path.join(out, SHARD_PROVENANCE)):
        os.unlink(path)
    chunk_dir = os.path.join(out, CHUNK_DIR)
    if os.path.isdir(chunk_dir):
        for path in glob.glob(os.path.join(chunk_dir, "chunk-*.npz*")):
            os.unlink(path)
        if not os.listdir(chunk_dir):
            os.rmdir(chunk_dir)


def _check_stored(out: str, config: SweepConfig, stored: dict | None, resume: bool) -> None:
    """Refuse a folder holding another config, or this config without `resume`, or foreign files."""
    if stored is not None:
        if stored["hash"] != config.hash:
            diff = differences(stored["config"], config.hashed())
            more = f"; and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise JaxMoEInputError(
                "out", out, f"holds a sweep of another config (folder vs this run: {'; '.join(diff[:3])}{more}); "
                "use another --out, or --overwrite to discard it")
        if not resume:
            plan = plan_chunks(config)
            done = len(completed_chunks(out, config, plan))
            raise JaxMoEInputError("out", out, f"already holds this sweep ({done} of {len(plan)} chunks done): "
                                   "pass --resume to continue it, or --overwrite to start again")
        return
    found = [n for n in OUTPUT_FILES + (CHUNK_DIR,) if os.path.exists(os.path.join(out, n))]
    require(not found, "out", out, f"has {found} but no config.json, so it is not a jaxmoe sweep folder; "
            "use another --out, or --overwrite to replace them")


def check_folder(out: str, config: SweepConfig, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse `out` as `prepare_folder` would (a folder of another config, this config without `resume`, foreign
    files), touching nothing: for a run of several sweeps that checks every folder before any work."""
    check_modes(resume, overwrite)
    if not overwrite and os.path.isdir(out):
        _check_stored(out, config, read_folder_config(out), resume)


def prepare_folder(out: str, config: SweepConfig, *, resume: bool = False, overwrite: bool = False,
                   source_text: str | None = None, shard: Shard = ONE_SHARD) -> None:
    """Create / check the output folder and write `config.json`. A folder of another config is refused
    (naming the fields that differ); one holding this config needs `resume` (keep its completed chunks) or
    `overwrite` (discard the previous sweep's files, and only those). A shard (`Shard`, not the whole sweep)
    continues a folder of its config as `resume` does, since its sibling shards write it at the same time,
    and cannot `overwrite` it. Takes no lock: see `claim_folder`."""
    check_shard_modes(shard, overwrite)
    resume = resume or not shard.whole
    check_modes(resume, overwrite)
    make_folder(out)
    stored = read_folder_config(out)
    if overwrite:
        clear_outputs(out)
    else:
        try:
            _check_stored(out, config, stored, resume)
        except JaxMoEInputError:
            if shard.whole or stored is not None:
                raise
            stored = read_folder_config(out)  # a sibling shard started the folder meanwhile
            _check_stored(out, config, stored, resume)
    if stored is None or overwrite:  # config.json before chunks/: a sibling shard then finds a sweep folder
        atomic_write_json(os.path.join(out, "config.json"),
                          {"hash": config.hash, "config": config.hashed(), "preset": config.spec.get("preset"),
                           "labels": config.spec.get("labels", {})})
        if source_text is not None:
            atomic_write_bytes(os.path.join(out, "config.source.toml"), lambda fh: fh.write(source_text.encode()))
    os.makedirs(os.path.join(out, CHUNK_DIR), exist_ok=True)
    for stale in glob.glob(os.path.join(out, CHUNK_DIR, "*.tmp")):  # left by a killed run: never complete
        # (a sibling shard's file being written is young: left alone)
        with contextlib.suppress(FileNotFoundError):
            if shard.whole or time.time() - os.path.getmtime(stale) > STALE_SECONDS:
                os.unlink(stale)


# ---------------------------------------------------------------- provenance
def environment() -> dict:
    """Versions and device of this process (for provenance)."""
    device = jax.devices()[0]
    # The package's version without importing the package from inside it (an import circle): a submodule
    # is only ever imported after its package, so the package is in sys.modules.
    version = sys.modules["jaxmoe"].__version__
    return {"jaxmoe": version, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "device_count": jax.device_count(),
            "cpu_count": os.cpu_count()}


def read_runs(out: str) -> list[dict]:
    """The runs recorded in `out/provenance.json` and the shards' `provenance.shard-*.json`, by start time."""
    runs = []
    for path in [os.path.join(out, "provenance.json")] + sorted(glob.glob(os.path.join(out, SHARD_PROVENANCE))):
        if os.path.exists(path):
            with open(path) as fh:
                runs.extend(json.load(fh).get("runs", []))
    return sorted(runs, key=lambda run: run.get("started") or "")


class Provenance:
    """`provenance.json`: the earlier runs of this config plus this one, rewritten atomically at each step
    (the folder's lock keeps a concurrent run from writing it too)."""

    def __init__(self, out: str, config: SweepConfig, resume: bool, reused: list[int], shard: Shard = ONE_SHARD):
        self.path = os.path.join(out, shard.provenance_name)  # one file per shard: shards write at once
        self.data = self._load(config)
        self.run = {"started": now(), "finished": None, "argv": sys.argv, "resume": resume, "shard": list(shard),
                    "reused_chunks": reused,
                    "computed_chunks": [], "seconds": None, **environment()}
        self.data["runs"].append(self.run)
        self.write()
        self.t0 = time.perf_counter()

    def _load(self, config: SweepConfig) -> dict:
        try:
            with open(self.path) as fh:
                prov = json.load(fh)
            if prov.get("config_hash") == config.hash:
                return prov
        except (OSError, ValueError):
            pass
        return {"config_hash": config.hash, "seed": config.seed, "runs": []}

    def write(self) -> None:
        atomic_write_json(self.path, self.data)

    def chunk_done(self, index: int) -> None:
        self.run["computed_chunks"].append(index)
        self.run["seconds"] = time.perf_counter() - self.t0
        self.write()

    def finish(self) -> None:
        self.run["finished"] = now()
        self.run["seconds"] = time.perf_counter() - self.t0
        self.write()


# ---------------------------------------------------------------- the lock
def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr)


def read_lock(path: str) -> dict | None:
    """The record in a lock file; None when there is none. A file being written is read again a moment later;
    one left half-written reads as its modification time alone, so that it expires like a lock without heartbeat."""
    for _ in range(3):
        try:
            with open(path) as fh:
                record = json.load(fh)
            if isinstance(record, dict):
                return record
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            time.sleep(0.01)  # its writer is a few microseconds from done
    try:
        return {"heartbeat_time": os.path.getmtime(path)}
    except OSError:
        return None


def _pid_alive(pid) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except (OverflowError, TypeError, ValueError):
        return False
    return True


def _encode(record: dict) -> bytes:
    return (json.dumps(record) + "\n").encode()


def _describe(holder: dict) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('started', '?')}"


class FolderLock:
    """The lock of one sweep folder, `DIR/sweep.lock` (see the module docstring). `acquire()` raises
    `JaxMoEInputError` when a running sweep holds it; `beat()` refreshes the heartbeat; `release()` deletes it.
    Also a context manager (acquire on enter, release on exit, whatever the exit)."""

    def __init__(self, out: str, log: Callable[[str], None] | None = None, *, stale_seconds: float = STALE_SECONDS,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, name: str = LOCK_FILE):
        self.out, self.path = out, os.path.join(out, name)
        self.log = log or _stderr_line
        self.stale_seconds, self.heartbeat_seconds = stale_seconds, heartbeat_seconds
        self.record: dict | None = None
        self._lost: dict | None = None  # the record of whoever took the lock over from this run
        self._mutex = threading.Lock()  # beat() runs in the main thread and in the heartbeat thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -------- taking it
    def acquire(self) -> "FolderLock":
        self._stop.clear()
        self._lost = None
        try:
            for _ in range(10):  # each pass ends unless the lock changed hands meanwhile
                if self._create():
                    break
                holder = read_lock(self.path)
                if holder is None:
                    continue  # released meanwhile: try again
                why = self._stale(holder)
                if why is None:
                    raise self._busy(holder)
                if self._take_over(holder, why):
                    break
            else:
                raise self._busy(read_lock(self.path) or {})
        except BaseException:
            self.release()  # e.g. Ctrl-C between creating the file and returning
            raise
        self._thread = threading.Thread(target=self._beat_loop, name=f"jaxmoe-lock-{self.out}", daemon=True)
        self._thread.start()
        return self

    def _new_record(self) -> dict:
        t = time.time()
        return {"host": socket.gethostname(), "pid": os.getpid(), "started": now(), "heartbeat": now(),
                "heartbeat_time": t, "token": uuid.uuid4().hex, "argv": sys.argv}

    def _create(self) -> bool:
        """Create the lock file if there is none (O_EXCL: atomic); True if this process now holds it."""
        record = self._new_record()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE)
        except FileExistsError:
            return False
        self.record = record  # from here on release() deletes the file, even half-written
        with os.fdopen(fd, "wb") as fh:
            fh.write(_encode(record))
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _stale(self, holder: dict) -> str | None:
        """Why the lock `holder` is stale, or None when its sweep may still be running."""
        if holder.get("host") == socket.gethostname() and "pid" in holder and not _pid_alive(holder["pid"]):
            return "its process is gone"
        age = time.time() - float(holder.get("heartbeat_time", 0.0))
        if age > self.stale_seconds:
            return f"no heartbeat for {age / 60:.0f} min"
        return None

    def _take_over(self, holder: dict, why: str) -> bool:
        """Replace the stale lock `holder`, under a guard file so that of several runs finding it stale at once
        only one takes it over (the others then find a live lock). True if this process now holds it."""
        guard = self.path + ".takeover"
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE))
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - os.path.getmtime(guard) > _GUARD_SECONDS:
                    os.unlink(guard)  # left by a run killed while taking over
                    return False
            raise self._busy(holder) from None
        try:
            if read_lock(self.path) != holder:
                return False  # changed hands meanwhile: look again
            self.log(f"{self.path}: taking over the lock of a sweep that is not running ({_describe(holder)}; {why})")
            self.record = self._new_record()
            atomic_write_bytes(self.path, lambda fh: fh.write(_encode(self.record)))  # a new file: see beat()
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(guard)

    def _busy(self, holder: dict) -> JaxMoEInputError:
        minutes = f"{self.stale_seconds / 60:g}"
        return JaxMoEInputError("out", self.out, f"is in use by a running sweep ({_describe(holder)}); wait for it or "
                                f"use another --out (a sweep killed on another host leaves a lock that expires "
                                f"{minutes} min after its last heartbeat)")

    # -------- holding it
    def beat(self) -> None:
        """Refresh the heartbeat; raises `JaxMoEInputError` if another run has taken the lock over (this
        process was frozen for longer than `stale_seconds`): two sweeps must not write one folder."""
        with self._mutex:
            if self.record is not None:
                self._refresh()
            if self._lost is not None:
                whom = f"taken over by another sweep ({_describe(self._lost)})" if self._lost.get("host") \
                    else f"removed or replaced ({self.path})"
                raise JaxMoEInputError("out", self.out, f"its lock was {whom}: this run stops; "
                                       "its completed chunks are saved")

    def _refresh(self) -> None:
        """Rewrite the heartbeat in place, in the very file checked to hold this run's token. A takeover
        writes a new file (`os.replace`), which this write cannot reach: a run frozen past the timeout cannot
        clobber the lock of the run that took over; it finds the other token and stops."""
        try:
            fh = open(self.path, "r+b")
        except FileNotFoundError:
            self.record, self._lost = None, {}
            return
        with fh:
            try:
                current = json.loads(fh.read())
            except ValueError:
                current = {}
            if not isinstance(current, dict) or current.get("token") != self.record["token"]:
                self.record, self._lost = None, current if isinstance(current, dict) else {}
                return
            record = {**self.record, "heartbeat": now(), "heartbeat_time": time.time()}
            fh.seek(0)
            fh.write(_encode(record))
            fh.truncate()
        self.record = record

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - lost or unwritable: the main thread's next beat() says so
                return

    def release(self) -> None:
        """Stop the heartbeat and delete the lock file if it is still this run's."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._mutex:
            if self.record is not None:
                current = read_lock(self.path) or {}
                if current.get("token") in (self.record["token"], None):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
            self.record = None


@contextlib.contextmanager
def claim_folder(out: str, config: SweepConfig, *, resume: bool = False, overwrite: bool = False,
                 source_text: str | None = None, log: Callable[[str], None] | None = None,
                 shard: Shard = ONE_SHARD) -> Iterator[FolderLock]:
    """Lock the folder `out` for a sweep of `config`, then `prepare_folder` it; yields the held `FolderLock`,
    released on leaving the block whatever the exit. The lock is taken before the folder is read, so that of
    several runs started together only one can pass the folder rules (and compute, and write provenance). A
    shard takes its own lock (`Shard.lock_name`): one run per (folder, shard)."""
    check_modes(resume, overwrite)
    check_shard_modes(shard, overwrite)
    make_folder(out)
    with FolderLock(out, log, name=shard.lock_name) as lock:
        for stale in glob.glob(os.path.join(out, shard.lock_name + ".*.tmp")):  # a heartbeat cut short by a kill
            os.unlink(stale)
        prepare_folder(out, config, resume=resume, overwrite=overwrite, source_text=source_text, shard=shard)
        yield lock
