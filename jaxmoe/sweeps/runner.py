r"""Resumable sweeps: a rate study run chunk by chunk into a folder, each chunk saved atomically as it finishes.

**Chunk = one size bucket x all replicates** (`store.plan_chunks`): the sorted sizes grouped by
`bucket_sizes(sizes, solver.bucket_ratio)`, exactly as `fit_curve` groups them, and each group is one
`fit_curve` call: one compiled shape per chunk, so chunking adds no compilation, and every fit's key is
`fold_in(fold_in(seed, n), r)`, so a chunk's results do not depend on which other chunks ran, or when.
With the usual geometric sizes (ratio >= 1.25 between neighbours) a chunk is one size x all replicates.

**Folder layout** (`DIR`, written through `jaxmoe.sweeps.store`, whose docstring has the details):
`config.json` (+ `config.source.toml`), `chunks/chunk-XXX-nA-B.npz` (one per chunk, complete or absent),
`provenance.json` (versions, device, command line, timings of every run), `sweep.lock` while a sweep runs,
and the report written at the end by `report.write_report`: `results.csv`, `summary.json`,
`rate_curves.png` / `.pdf` (also by `jaxmoe report DIR`, at any time, without the lock).

**Refusals.** A folder holding a sweep of another config is refused (the message names the fields that
differ); a folder holding this config needs `resume=True` (continue: completed chunks are kept, the rest
computed) or `overwrite=True` (discard the previous sweep's files, and only those). A folder whose sweep is
running (its lock is held) is refused at once, whatever the flags; a stale lock (a killed sweep) is taken
over with a warning line. A killed sweep restarted with `resume=True` ends with the same results as an
uninterrupted one (tested with SIGKILL).
"""

from __future__ import annotations

import os
import sys
import time
from typing import NamedTuple

import jax
import numpy as np

from jaxmoe.estimation.curve import fit_curve
from jaxmoe.losses.curve import fit_metrics, parameter_errors_fn
from jaxmoe.sweeps.config import SweepConfig
from jaxmoe.sweeps.progress import Progress
from jaxmoe.sweeps.report import write_report
from jaxmoe.sweeps.store import (
    CHUNK_DIR,
    FIT_FIELDS,
    ChunkPlan,
    FolderLock,
    Provenance,
    claim_folder,
    completed_chunks,
    now,
    param_field,
    plan_chunks,
    save_chunk,
)

__all__ = ["ChunkPlan", "SweepResult", "plan_chunks", "run_chunk", "run_sweep"]


class SweepResult(NamedTuple):
    """What `run_sweep` did: the folder, chunks computed now / reused from disk, seconds, and the summary."""

    out: str
    computed: list[int]
    reused: list[int]
    seconds: float
    summary: dict | None


def run_chunk(config: SweepConfig, setting, chunk: ChunkPlan, errors_fn=None) -> tuple[dict[str, np.ndarray], dict]:
    """Fit one chunk (`fit_curve` on its sizes, all replicates) and measure it; returns (arrays, info)."""
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
        arrays[param_field(path)] = np.asarray(leaf)
    # fit_curve's own report (timings, work, padding), its JSON-able scalars: what the engine reports may grow.
    fit_info = {k: v for k, v in fit.info.items() if isinstance(v, (bool, int, float, str)) or v is None}
    seconds = time.perf_counter() - t0
    # Compile time the chunk waited for (fit_curve may compile in the background, overlapping the fits).
    wait = float(fit.info.get("compile_wait_seconds", fit.info.get("compile_seconds", 0.0)))
    info = {"index": chunk.index, "sizes": list(chunk.sizes), "config_hash": config.hash,
            "seconds": seconds, "compile_seconds": min(wait, seconds),
            "fit_info": fit_info, "finished_at": now(), "pid": os.getpid()}
    return arrays, info


def _label(chunk: ChunkPlan) -> str:
    return f"n = {chunk.sizes[0]}" + (f"..{chunk.sizes[-1]}" if len(chunk.sizes) > 1 else "")


def _run_chunks(config: SweepConfig, setting, out: str, todo: list[ChunkPlan], prov: Provenance,
                lock: FolderLock, progress: bool) -> None:
    """Fit the chunks `todo` one by one; each is saved as it finishes, then recorded in provenance and the
    lock's heartbeat (a killed sweep loses only the chunk in progress)."""
    bar = Progress([c.work for c in todo], 0, enabled=progress)
    errors_fn = parameter_errors_fn(setting)
    for chunk in todo:
        arrays, info = run_chunk(config, setting, chunk, errors_fn)
        save_chunk(os.path.join(out, CHUNK_DIR, chunk.filename), arrays, info)
        prov.chunk_done(chunk.index)
        lock.beat()
        bar.update(info["seconds"], info["compile_seconds"], _label(chunk))


def run_sweep(config: SweepConfig, out: str, *, resume: bool = False, overwrite: bool = False,
              progress: bool = False, report: bool = True, source_text: str | None = None,
              num_bootstrap: int = 1000, log=None) -> SweepResult:
    """Run (or continue) the sweep `config` into the folder `out`; returns a `SweepResult`.

    The folder is locked for the whole run (`store.claim_folder`: a folder whose sweep is running is refused
    at once). Completed chunks found in `out` (same config, `resume=True`) are reused, the others fitted one
    by one and saved atomically as they finish. `progress`: a bar with ETA on stderr. `report`: write
    `results.csv`, `summary.json` and the plots at the end (`report.write_report`). `log(line)`: where
    warnings go (stderr)."""
    log = log or (lambda line: print(line, file=sys.stderr))
    setting = config.setting()
    with claim_folder(out, config, resume=resume, overwrite=overwrite, source_text=source_text, log=log) as lock:
        plan = plan_chunks(config)
        done = completed_chunks(out, config, plan, warn=log)
        todo = [c for c in plan if c.index not in done]
        prov = Provenance(out, config, resume, sorted(done))
        _run_chunks(config, setting, out, todo, prov, lock, progress)
        prov.finish()
        summary = write_report(out, num_bootstrap=num_bootstrap) if report else None
    return SweepResult(out, [c.index for c in todo], sorted(done), prov.run["seconds"], summary)
