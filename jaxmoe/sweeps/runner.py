r"""Resumable sweeps: a rate study run chunk by chunk into a folder, each chunk written atomically.

**Chunk = one size bucket x all replicates.** The sorted sizes are grouped by `bucket_sizes(sizes,
solver.bucket_ratio)`, exactly as `fit_curve` groups them, and each group is one `fit_curve` call: one
compiled shape per chunk, so chunking adds no compilation, and every fit's key is
`fold_in(fold_in(seed, n), r)`, so a chunk's results do not depend on which other chunks ran, or when.
With the usual geometric sizes (ratio >= 1.25 between neighbours) a chunk is one size x all replicates.

**Folder layout** (`DIR`):

- `config.json`: the normalised config (every default written out) and its hash; `config.source.toml`: the
  file it came from, if any;
- `chunks/chunk-XXX-nA-B.npz`: per chunk, every fit's objective, status, iterations, metrics and
  parameters, with the config hash and timings; written to a temporary file, fsync-ed, then `os.replace`d,
  so a chunk file is either complete or absent whenever the process dies;
- `provenance.json`: jaxmoe / jax / numpy versions, device, CPU count, command line and timings of every
  run (a resumed sweep has several);
- `results.csv`, `summary.json`, `rate_curves.png`, `rate_curves.pdf`: written by `report.write_report`
  from the chunks at the end (and by `jaxmoe report DIR` at any time).

**Refusals.** A folder holding a sweep of another config is refused (the message names the fields that
differ); a folder holding this config needs `resume=True` (continue: completed chunks are kept, the rest
computed) or `overwrite=True` (discard the previous sweep's files, and only those). A killed sweep restarted
with `resume=True` ends with the same results as an uninterrupted one (tested with SIGKILL).
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmoe._errors import JaxMoEInputError, require
from jaxmoe.sweeps.config import SweepConfig, differences
from jaxmoe.losses.curve import fit_metrics, parameter_errors_fn
from jaxmoe.sweeps.progress import Progress

OUTPUT_FILES = ("config.json", "config.source.toml", "provenance.json", "results.csv", "summary.json",
                "rate_curves.png", "rate_curves.pdf")
CHUNK_DIR = "chunks"
# Per-fit arrays stored in a chunk (besides the metrics and parameters), indexed [size, replicate].
FIT_FIELDS = ("objective", "objective_truth", "objective_reference", "reached_minimum", "iterations", "status",
              "converged", "empty_cells")


class ChunkPlan(NamedTuple):
    """One chunk: its position, its sizes (one bucket), number of fits and work (fits x padded length)."""

    index: int
    sizes: tuple[int, ...]
    fits: int
    work: int

    @property
    def filename(self) -> str:
        return f"chunk-{self.index:03d}-n{self.sizes[0]}-{self.sizes[-1]}.npz"


class SweepResult(NamedTuple):
    """What `run_sweep` did: the folder, chunks computed now / reused from disk, seconds, and the summary."""

    out: str
    computed: list[int]
    reused: list[int]
    seconds: float
    summary: dict | None


def plan_chunks(config: SweepConfig) -> list[ChunkPlan]:
    """The chunks of a sweep: `fit_curve`'s size buckets, in increasing n."""
    from jaxmoe.estimation.curve import bucket_sizes

    buckets = bucket_sizes(np.asarray(config.sizes), config.spec["solver"]["bucket_ratio"])
    r = config.replicates
    return [ChunkPlan(i, tuple(int(n) for n in b), len(b) * r, len(b) * r * int(max(b))) for i, b in enumerate(buckets)]


def run_chunk(config: SweepConfig, setting, chunk: ChunkPlan, errors_fn=None) -> tuple[dict[str, np.ndarray], dict]:
    """Fit one chunk (`fit_curve` on its sizes, all replicates) and measure it; returns (arrays, info)."""
    from jaxmoe.estimation.curve import fit_curve

    t0 = time.perf_counter()
    fit = fit_curve(setting, list(chunk.sizes), config.replicates, config.seed, **config.fit_kwargs())
    metrics, empty = fit_metrics(setting, fit, errors_fn)
    arrays = {"sizes": np.asarray(fit.sizes)}
    for name in FIT_FIELDS[:-1]:
        arrays[name] = np.asarray(getattr(fit, name))
    arrays["empty_cells"] = empty
    for name, values in metrics.items():
        arrays[f"metric/{name}"] = np.asarray(values, dtype=np.float64)
    for path, leaf in jax.tree_util.tree_flatten_with_path(fit.params)[0]:
        arrays["param/" + "/".join(_key_name(k) for k in path)] = np.asarray(leaf)
    # fit_curve's own report (timings, work, padding), its JSON-able scalars: what the engine reports may grow.
    fit_info = {k: v for k, v in fit.info.items() if isinstance(v, (bool, int, float, str)) or v is None}
    seconds = time.perf_counter() - t0
    # Compile time the chunk waited for (fit_curve may compile in the background, overlapping the fits).
    wait = float(fit.info.get("compile_wait_seconds", fit.info.get("compile_seconds", 0.0)))
    info = {"index": chunk.index, "sizes": list(chunk.sizes), "config_hash": config.hash,
            "seconds": seconds, "compile_seconds": min(wait, seconds),
            "fit_info": fit_info, "finished_at": _now(), "pid": os.getpid()}
    return arrays, info


def _key_name(key) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


# ---------------------------------------------------------------- atomic files
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


def atomic_write_bytes(path: str, write) -> None:
    """Write a file so that it is either complete or absent: temporary file in the same folder, fsync,
    `os.replace` (atomic on POSIX), then fsync the folder so the rename itself survives a crash."""
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
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(obj, indent=2, default=_json_default) + "\n").encode()))


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):  # NumPy and JAX arrays
        return np.asarray(obj).tolist()
    raise TypeError(type(obj).__name__)


def save_chunk(path: str, arrays: dict[str, np.ndarray], info: dict) -> None:
    payload = dict(arrays)
    payload["info"] = np.asarray(json.dumps(info, default=_json_default))
    atomic_write_bytes(path, lambda fh: np.savez(fh, **payload))


def load_chunk(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """A chunk file's arrays and info (raises on a damaged file)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "info"}
        info = json.loads(str(data["info"]))
    return arrays, info


def completed_chunks(out: str, config: SweepConfig, plan: list[ChunkPlan] | None = None,
                     warn=None) -> dict[int, tuple[dict, dict]]:
    """The chunk files of `out` that belong to `config` and are readable, by chunk index. A file whose hash
    or sizes do not match the plan is refused (never mixed in); an unreadable one is skipped (recomputed)."""
    plan = plan_chunks(config) if plan is None else plan
    done = {}
    for chunk in plan:
        path = os.path.join(out, CHUNK_DIR, chunk.filename)
        if not os.path.exists(path):
            continue
        try:
            arrays, info = load_chunk(path)
        except Exception as err:  # noqa: BLE001 - a damaged file is recomputed, not trusted
            if warn:
                warn(f"{path} is unreadable ({type(err).__name__}); it will be recomputed")
            continue
        require(info.get("config_hash") == config.hash and tuple(info.get("sizes", ())) == chunk.sizes,
                "chunk", path, f"belongs to another config (hash {info.get('config_hash')}, this one {config.hash}): "
                "remove it or use another --out")
        done[chunk.index] = (arrays, info)
    return done


# ---------------------------------------------------------------- the folder
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


def _clear_outputs(out: str) -> None:
    """Remove the files a sweep writes, and only those."""
    for name in OUTPUT_FILES:
        path = os.path.join(out, name)
        if os.path.isfile(path):
            os.unlink(path)
    chunk_dir = os.path.join(out, CHUNK_DIR)
    if os.path.isdir(chunk_dir):
        for path in glob.glob(os.path.join(chunk_dir, "chunk-*.npz*")):
            os.unlink(path)
        if not os.listdir(chunk_dir):
            os.rmdir(chunk_dir)


def prepare_folder(out: str, config: SweepConfig, *, resume: bool = False, overwrite: bool = False,
                   source_text: str | None = None) -> None:
    """Create / check the output folder and write `config.json` (see the module docstring for the rules)."""
    require(not (resume and overwrite), "--resume/--overwrite", "both", "choose one: continue the sweep or discard it")
    try:
        os.makedirs(out, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".jaxmoe-write-test-", delete=True)
        probe.close()
    except OSError as err:
        raise JaxMoEInputError("out", out, f"is not a writable folder ({err.strerror or type(err).__name__})") from None
    stored = read_folder_config(out)
    if stored is not None and not overwrite:
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
    if stored is None and not overwrite:
        found = [n for n in OUTPUT_FILES + (CHUNK_DIR,) if os.path.exists(os.path.join(out, n))]
        require(not found, "out", out, f"has {found} but no config.json, so it is not a jaxmoe sweep folder; "
                "use another --out, or --overwrite to replace them")
    if overwrite:
        _clear_outputs(out)
    os.makedirs(os.path.join(out, CHUNK_DIR), exist_ok=True)
    for stale in glob.glob(os.path.join(out, CHUNK_DIR, "*.tmp")):  # left by a killed run: never complete
        os.unlink(stale)
    if stored is None or overwrite:
        atomic_write_json(os.path.join(out, "config.json"),
                          {"hash": config.hash, "config": config.hashed(), "preset": config.spec.get("preset"),
                           "labels": config.spec.get("labels", {})})
        if source_text is not None:
            atomic_write_bytes(os.path.join(out, "config.source.toml"), lambda fh: fh.write(source_text.encode()))


def environment() -> dict:
    """Versions and device of this process (for provenance)."""
    import jaxlib

    import jaxmoe

    device = jax.devices()[0]
    return {"jaxmoe": jaxmoe.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "device_count": jax.device_count(),
            "cpu_count": os.cpu_count()}


def _load_provenance(out: str, config: SweepConfig) -> dict:
    path = os.path.join(out, "provenance.json")
    try:
        with open(path) as fh:
            prov = json.load(fh)
        if prov.get("config_hash") == config.hash:
            return prov
    except (OSError, ValueError):
        pass
    return {"config_hash": config.hash, "seed": config.seed, "runs": []}


# ---------------------------------------------------------------- the sweep
def run_sweep(config: SweepConfig, out: str, *, resume: bool = False, overwrite: bool = False,
              progress: bool = False, report: bool = True, source_text: str | None = None,
              num_bootstrap: int = 1000, log=None) -> SweepResult:
    """Run (or continue) the sweep `config` into the folder `out`; returns a `SweepResult`.

    Completed chunks found in `out` (same config, `resume=True`) are reused, the others fitted one by one and
    saved atomically as they finish. `progress`: a bar with ETA on stderr. `report`: write `results.csv`,
    `summary.json` and the plots at the end (`report.write_report`). `log(line)`: where warnings go (stderr)."""
    log = log or (lambda line: print(line, file=sys.stderr))
    setting = config.setting()
    prepare_folder(out, config, resume=resume, overwrite=overwrite, source_text=source_text)
    plan = plan_chunks(config)
    done = completed_chunks(out, config, plan, warn=log)
    todo = [c for c in plan if c.index not in done]
    prov = _load_provenance(out, config)
    run = {"started": _now(), "finished": None, "argv": sys.argv, "resume": resume, "reused_chunks": sorted(done),
           "computed_chunks": [], "seconds": None, **environment()}
    prov["runs"].append(run)
    prov_path = os.path.join(out, "provenance.json")
    atomic_write_json(prov_path, prov)
    t0 = time.perf_counter()
    bar = Progress([c.work for c in todo], 0, enabled=progress)
    errors_fn = parameter_errors_fn(setting)
    for chunk in todo:
        arrays, info = run_chunk(config, setting, chunk, errors_fn)
        save_chunk(os.path.join(out, CHUNK_DIR, chunk.filename), arrays, info)
        run["computed_chunks"].append(chunk.index)
        run["seconds"] = time.perf_counter() - t0
        atomic_write_json(prov_path, prov)
        bar.update(info["seconds"], info["compile_seconds"],
                   f"n = {chunk.sizes[0]}" + (f"..{chunk.sizes[-1]}" if len(chunk.sizes) > 1 else ""))
    run["finished"] = _now()
    run["seconds"] = time.perf_counter() - t0
    atomic_write_json(prov_path, prov)
    summary = None
    if report:
        from jaxmoe.sweeps.report import write_report

        summary = write_report(out, num_bootstrap=num_bootstrap)
    return SweepResult(out, [c.index for c in todo], sorted(done), run["seconds"], summary)
