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

**Grids and shards.** A grid (`jaxmoe.sweeps.grid`) runs cell by cell, each cell an ordinary sweep in its
own folder (`run_grid`); `sweep_targets` lists the folders of a run and numbers its chunks, cell by cell,
which a `store.Shard` (`--shard I/N`) splits for array jobs; `jaxmoe.sweeps.distributed` runs the same chunks
as tasks of a Dask cluster instead.

**Refusals.** A folder holding a sweep of another config is refused (the message names the fields that
differ); a folder holding this config needs `resume=True` (continue: completed chunks are kept, the rest
computed) or `overwrite=True` (discard the previous sweep's files, and only those). A folder whose sweep is
running (its lock is held) is refused at once, whatever the flags; a stale lock (a killed sweep) is taken
over with a warning line. A sweep whose chunks cannot fit in this machine's memory (`chunk_memory_bytes`)
is refused before the folder is touched, with one line saying how much a chunk needs. A killed sweep restarted with `resume=True` ends with the same results as an
uninterrupted one (tested with SIGKILL).
"""

from __future__ import annotations

import os
import sys
import time
from typing import NamedTuple

import jax
import numpy as np

from jaxmoe.validation import require
from jaxmoe.estimation.curve import fit_curve
from jaxmoe.estimation.problem import ravel
from jaxmoe.losses.curve import fit_metrics, parameter_errors_fn
from jaxmoe.sweeps.config import SweepConfig
from jaxmoe.sweeps.grid import GridConfig, as_sweep, cell_folder, claim_grid_folder
from jaxmoe.sweeps.grid_report import write_grid_report
from jaxmoe.sweeps.progress import Progress
from jaxmoe.sweeps.report import write_report
from jaxmoe.sweeps.store import (
    CHUNK_DIR,
    FIT_FIELDS,
    ONE_SHARD,
    ChunkPlan,
    FolderLock,
    Provenance,
    Shard,
    claim_folder,
    completed_chunks,
    now,
    param_field,
    parse_shard,
    plan_chunks,
    save_chunk,
)

__all__ = ["ChunkPlan", "SweepResult", "GridResult", "Target", "chunk_memory_bytes", "check_memory",
           "machine_memory_bytes", "plan_chunks", "run_chunk", "run_sweep", "run_grid", "sweep_targets"]


class SweepResult(NamedTuple):
    """What `run_sweep` did: the folder, chunks computed now / reused from disk, seconds, and the summary."""

    out: str
    computed: list[int]
    reused: list[int]
    seconds: float
    summary: dict | None


def chunk_memory_bytes(length: int, fits: int, d: int, p: int, restarts: int, itemsize: int = 8) -> int:
    """Bytes the engine holds at least for one sweep chunk (one `fit_curve` call), as it holds them:

        itemsize x L x (d + 2)  +  F x (8 + itemsize x (M + 1) x p)

    the first term one fit's data (x: d x L, y and mask: L each) at the chunk's largest size L; the second every
    fit's key (two uint32: 8 bytes), its M starts and its exact-split start (p parameters each), drawn for all F
    fits of the chunk at once. `itemsize`: 8 in float64, 4 in float32. A lower bound (solver work comes on top,
    within `memory_gib`), so a sweep it refuses certainly cannot run."""
    return itemsize * length * (d + 2) + fits * (8 + itemsize * (restarts + 1) * p)


def machine_memory_bytes() -> int | None:
    """This machine's physical memory in bytes (`sysconf`), or None where it cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return total if total > 0 else None


def check_memory(config: SweepConfig, setting, available: int | None = None) -> None:
    """Refuse (`JaxMoEInputError` on `sweep.sizes` or `sweep.replicates`) a sweep with a chunk whose
    `chunk_memory_bytes` exceed `available` (default: `machine_memory_bytes()`; unknown: no check)."""
    available = machine_memory_bytes() if available is None else available
    if not available:
        return
    s, d = config.spec["solver"], setting.d
    itemsize = 8 if s["precision"] == "float64" else 4
    p = int(ravel(setting.fitted_model().zeros())[0].size)
    have = f"this machine has {available / 2**30:.3g} GiB"
    for chunk in plan_chunks(config):
        length = chunk.sizes[-1]
        data = chunk_memory_bytes(length, 0, d, p, s["restarts"], itemsize)
        require(data <= available, "sweep.sizes", length, f"needs about {data / 2**30:.3g} GiB for one fit's data "
                f"({itemsize} x n x (d + 2) bytes); {have}")
        need = chunk_memory_bytes(length, chunk.fits, d, p, s["restarts"], itemsize)
        require(need <= available, "sweep.replicates", config.replicates,
                f"needs about {need / 2**30:.3g} GiB for the chunk {_label(chunk)} ({chunk.fits} fits' keys "
                f"and starts, {8 + itemsize * (s['restarts'] + 1) * p} bytes each, drawn at once); {have}")


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


class Target(NamedTuple):
    """One sweep folder of a run: a sweep's own, or a grid cell's (`cell` its index, else None); `offset` the
    position of its first chunk in the run (a grid's chunks numbered cell by cell), which `Shard`s split."""

    cell: int | None
    config: SweepConfig
    out: str
    offset: int


def sweep_targets(config: SweepConfig | GridConfig, out: str) -> list[Target]:
    """The sweep folders a run of `config` into `out` writes: `out` itself, or one per grid cell."""
    if isinstance(config, SweepConfig):
        return [Target(None, config, out, 0)]
    targets, offset = [], 0
    for cell in config.cells:
        targets.append(Target(cell.index, cell.config, cell_folder(out, cell), offset))
        offset += len(plan_chunks(cell.config))
    return targets


def run_sweep(config: SweepConfig | GridConfig | dict, out: str, *, resume: bool = False, overwrite: bool = False,
              progress: bool = False, report: bool = True, source_text: str | None = None,
              num_bootstrap: int = 1000, log=None, plots: bool = True, shard=None) -> SweepResult | GridResult:
    """Run (or continue) the sweep `config` (a `SweepConfig` or a config dict) into the folder `out`; returns
    a `SweepResult`. A grid (a `GridConfig`, or a dict with a `grid` table) is `run_grid`'s, with the same
    arguments. Refused before the folder is touched: a bad config, a chunk that cannot fit in memory
    (`check_memory`).

    The folder is locked for the whole run (`store.claim_folder`: a folder whose sweep is running is refused
    at once). Completed chunks found in `out` (same config, `resume=True`) are reused, the others fitted one
    by one and saved atomically as they finish. `progress`: a bar with ETA on stderr. `report`: write
    `results.csv`, `summary.json` and (`plots`) the plots at the end (`report.write_report`). `log(line)`:
    where warnings go (stderr). `shard="I/N"` (or a `store.Shard`): fit only shard I's chunks (`Shard`), for
    array jobs without a scheduler: shards run at once into one folder, each with its own lock and provenance,
    and `jaxmoe report` merges what has finished."""
    config = as_sweep(config)
    shard = ONE_SHARD if shard is None else parse_shard(shard)
    kwargs = dict(resume=resume, overwrite=overwrite, progress=progress, report=report, source_text=source_text,
                  num_bootstrap=num_bootstrap, log=log, plots=plots, shard=shard)
    if isinstance(config, GridConfig):
        return run_grid(config, out, **kwargs)
    check_memory(config, config.setting())
    return _run_target(Target(None, config, out, 0), **kwargs)


def _run_target(target: Target, *, resume: bool, overwrite: bool, progress: bool, report: bool,
                source_text: str | None, num_bootstrap: int, log, plots: bool, shard: Shard) -> SweepResult:
    """Claim one sweep folder and fit its chunks of `shard` not yet done (see `run_sweep`)."""
    config, out = target.config, target.out
    log = log or (lambda line: print(line, file=sys.stderr))
    for line in config.design_warnings():
        log(f"jaxmoe: warning: {line}")
    setting = config.setting()
    with claim_folder(out, config, resume=resume, overwrite=overwrite, source_text=source_text, log=log,
                      shard=shard) as lock:
        plan = plan_chunks(config)
        done = completed_chunks(out, config, plan, warn=log)
        todo = [c for c in plan if c.index not in done and shard.takes(target.offset + c.index)]
        prov = Provenance(out, config, resume, sorted(done), shard)
        _run_chunks(config, setting, out, todo, prov, lock, progress)
        prov.finish()
        summary = write_report(out, num_bootstrap=num_bootstrap, plots=plots) if report else None
    return SweepResult(out, [c.index for c in todo], sorted(done), prov.run["seconds"], summary)


class GridResult(NamedTuple):
    """What `run_grid` did: the folder, each cell's `SweepResult` (in cell order), seconds, and the summary."""

    out: str
    cells: list
    seconds: float
    summary: dict | None

    @property
    def computed(self) -> list[tuple[int, int]]:
        """(cell, chunk) pairs computed now."""
        return [(i, c) for i, r in enumerate(self.cells) for c in r.computed]

    @property
    def reused(self) -> list[tuple[int, int]]:
        """(cell, chunk) pairs reused from disk."""
        return [(i, c) for i, r in enumerate(self.cells) for c in r.reused]


def run_grid(grid: GridConfig | dict, out: str, *, resume: bool = False, overwrite: bool = False,
             progress: bool = False, report: bool = True, source_text: str | None = None,
             num_bootstrap: int = 1000, log=None, plots: bool = True, shard=None) -> GridResult:
    """Run (or continue) the grid `grid` into the folder `out` (layout: `jaxmoe.sweeps.grid`); returns a
    `GridResult`. Every cell's memory is checked before the folder is touched; the grid folder is locked and
    checked like a sweep's (`grid.claim_grid_folder`: another grid refused, this one needs `resume` or
    `overwrite`), then each cell runs as an ordinary sweep in its own folder, continuing whatever that folder
    holds, and the grid's report is written at the end (`grid_report.write_grid_report`). Each cell folder
    gets its `results.csv` and `summary.json`; its plot only from `jaxmoe report` on it (the grid's figure has
    every cell: a figure per cell would cost about a second each). `shard`: as `run_sweep`'s, over the
    grid's chunks numbered cell by cell."""
    grid = as_sweep(grid)
    require(isinstance(grid, GridConfig), "config", grid.name, "has no [grid]: use run_sweep")
    shard = ONE_SHARD if shard is None else parse_shard(shard)
    log = log or (lambda line: print(line, file=sys.stderr))
    for cell in grid.cells:
        check_memory(cell.config, cell.config.setting())
    t0 = time.perf_counter()
    with claim_grid_folder(out, grid, resume=resume, overwrite=overwrite, source_text=source_text, log=log,
                           shard=shard) as lock:
        results = []
        for target in sweep_targets(grid, out):
            if progress:
                log(f"cell {target.cell + 1} of {len(grid.cells)}: {grid.cells[target.cell].label}")
            # The grid folder passed its rules: whatever a cell folder holds is this cell's (its hash is checked).
            results.append(_run_target(target, resume=True, overwrite=False, progress=progress, report=report,
                                       source_text=None, num_bootstrap=num_bootstrap, log=log, plots=False,
                                       shard=shard))
            lock.beat()
        summary = write_grid_report(out, num_bootstrap=num_bootstrap, plots=plots) if report else None
    return GridResult(out, results, time.perf_counter() - t0, summary)
