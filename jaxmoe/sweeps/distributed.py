r"""One sweep (or grid) on Dask distributed: its chunks become tasks of a cluster, written by the workers into
the shared folder.

**Why Dask.** Chunks are independent, deterministic tasks of seconds to minutes, so any task engine would do;
the choice is on robustness. `distributed` restarts a killed worker (its nanny) and reschedules the tasks it
held, retries a task that raised (`retries`), runs on a lab's batch system through `dask-jobqueue`
(`SLURMCluster`, `PBSCluster`, `SGECluster`, ...), is pure Python (a few MB, no daemon to install), and starts
its local workers with `spawn`, not `fork` (a forked JAX process can deadlock). Ray brings a far heavier
install and its own object store, which chunk files in a shared folder do not need; submitit submits Slurm
jobs but has no local cluster or rescheduling of a killed job's work. A 2-core machine cannot tell their
speeds apart, and speed was not the question.

**What runs where.** This process validates the config, checks every chunk's memory, holds the folder locks
(the grid's and every cell's, `store.claim_folder`), decides what is left to do (completed chunks are kept:
`resume` as for `run_sweep`) and writes provenance and the reports. Each task rebuilds the config from its
normalised spec (its hash checked), fits one chunk (`runner.run_chunk`: one size bucket x all replicates) on
the worker's own devices, and writes the chunk file atomically into the folder (a shared file system on a
cluster); the file is complete or absent, so a worker killed mid-chunk costs that chunk only: the scheduler
gives it to another worker (or the restarted one), and the fits are the same (every fit's key depends only
on (seed, n, replicate)).

**Cores.** One thread per worker (a task is one chunk, which already uses all of the worker's JAX devices).
Each worker makes its cores JAX devices (`jaxmoe.use_all_cores`) before its first fit: a local cluster of N
workers gives each `max(2, cores // N)` devices (`JAXMOE_CPU_DEVICES`), since a fit's bits are the same for
any device count >= 2, so results equal a one-process run's bit for bit (tested). Workers of an existing
cluster use their own `JAXMOE_CPU_DEVICES` (set it per worker in the job script: dask-jobqueue's
`job_script_prologue`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from typing import Callable

from jaxmoe.validation import JaxMoEInputError, require
from jaxmoe.runtime import use_all_cores
from jaxmoe.sweeps.config import SweepConfig, config_from_dict
from jaxmoe.sweeps.grid import GridConfig, as_sweep, claim_grid_folder
from jaxmoe.sweeps.grid_report import write_grid_report
from jaxmoe.sweeps.progress import Progress
from jaxmoe.sweeps.report import write_report
from jaxmoe.sweeps.runner import GridResult, SweepResult, Target, check_memory, run_chunk, sweep_targets
from jaxmoe.sweeps.store import CHUNK_DIR, ChunkPlan, Provenance, claim_folder, completed_chunks, plan_chunks, save_chunk

__all__ = ["run_distributed", "fit_chunk_task", "local_cluster", "worker_devices"]

INSTALL = "pip install 'jaxmoe[distributed]'"
CONNECT_TIMEOUT = "10s"  # how long to try reaching a --scheduler before saying it cannot be reached
POLL_SECONDS = 5.0  # how often a run waiting for its tasks checks that the cluster still has workers
NO_WORKERS_SECONDS = 120.0  # a cluster without workers this long ends the run (saved chunks kept)


def worker_devices(workers: int, cores: int | None = None) -> int:
    """JAX devices per worker of a local cluster of `workers` on `cores` cores: max(2, cores // workers)."""
    return max(2, (cores or os.cpu_count() or 1) // workers)


def fit_chunk_task(spec: dict, config_hash: str, chunk: ChunkPlan, path: str, chunk_fn: Callable | None = None) -> dict:
    """A worker's task: the config from its normalised `spec` (hash checked), one chunk fitted (`chunk_fn`,
    default `runner.run_chunk`) and saved atomically at `path`; returns the chunk's info."""
    use_all_cores()  # before this worker's first JAX computation (a no-op afterwards)
    config = config_from_dict(spec)
    require(config.hash == config_hash, "config", config.name, f"rebuilt on worker {socket.gethostname()} with hash "
            f"{config.hash}, not {config_hash}: a user module differs there")
    arrays, info = (chunk_fn or run_chunk)(config, config.setting(), chunk)
    info = {**info, "host": socket.gethostname()}
    save_chunk(path, arrays, info)
    return info


def _spec(config: SweepConfig) -> dict:
    """What a worker rebuilds the config from: the hashed spec, its labels and (speed only) its engine."""
    return {**config.hashed(), "labels": config.spec["labels"], "engine": config.spec["engine"]}


def _distributed():
    try:
        import distributed  # optional dependency (the `distributed` extra)
    except ImportError as err:
        raise ImportError(f"--workers and --scheduler need Dask distributed: {INSTALL}") from err
    return distributed


@contextlib.contextmanager
def local_cluster(workers: int):
    """A Dask `LocalCluster` of `workers` processes (spawned), one thread each, `worker_devices` JAX devices
    each, no dashboard; closed on leaving the block."""
    distributed = _distributed()
    env = {"JAXMOE_CPU_DEVICES": str(worker_devices(workers))}
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def _client(workers: int | None, scheduler: str | None, stack: contextlib.ExitStack):
    distributed = _distributed()
    address = scheduler if scheduler is not None else stack.enter_context(local_cluster(workers))
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except OSError as err:  # TimeoutError included
        raise JaxMoEInputError("--scheduler", address, f"cannot be reached ({type(err).__name__}: {err})") from None
    return stack.enter_context(client)


def run_distributed(config: SweepConfig | GridConfig | dict, out: str, *, workers: int | None = None,
                    scheduler: str | None = None, resume: bool = False, overwrite: bool = False,
                    progress: bool = False, report: bool = True, source_text: str | None = None,
                    num_bootstrap: int = 1000, log=None, retries: int = 2,
                    chunk_fn: Callable | None = None, plots: bool = True) -> SweepResult | GridResult:
    """Run (or continue) a sweep or grid into `out` with its chunks as tasks of a Dask cluster: a local one of
    `workers` processes, or the existing one at `scheduler` (an address, `tcp://host:8786`). The folder rules,
    `resume` / `overwrite`, reports and return value are `run_sweep`'s (the module docstring says what runs
    where); `retries`: how often a task that raised is tried again (a killed worker's tasks are rescheduled
    by the scheduler, up to its `allowed-failures`). `chunk_fn(config, setting, chunk) -> (arrays, info)`
    replaces `runner.run_chunk` on the workers (for instrumented runs and tests; importable by the workers)."""
    config = as_sweep(config)
    require((workers is None) != (scheduler is None), "--workers/--scheduler", (workers, scheduler),
            "give one: a local cluster of N workers, or the address of a running scheduler")
    require(workers is None or (isinstance(workers, int) and workers >= 1), "--workers", workers,
            "must be an integer >= 1")
    log = log or (lambda line: print(line, file=sys.stderr))
    targets = sweep_targets(config, out)
    for target in targets:
        check_memory(target.config, target.config.setting())
    _distributed()  # a missing install is said before any folder is touched
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        client = _client(workers, scheduler, stack)  # first: an unreachable scheduler leaves the folder untouched
        locks = _claim(config, out, targets, stack, resume=resume, overwrite=overwrite, source_text=source_text,
                       log=log)
        work = [(target, *_todo(target, resume, log)) for target in targets]
        _fit(client, work, locks, progress, retries, chunk_fn)
        for _, _, _, prov in work:
            prov.finish()
        results = [SweepResult(t.out, [c.index for c in todo], sorted(done), p.run["seconds"],
                               write_report(t.out, num_bootstrap=num_bootstrap, plots=plots and t.cell is None)
                               if report else None) for t, todo, done, p in work]
        if isinstance(config, SweepConfig):
            return results[0]
        summary = write_grid_report(out, num_bootstrap=num_bootstrap, plots=plots) if report else None
    return GridResult(out, results, time.perf_counter() - t0, summary)


def _claim(config, out: str, targets: list[Target], stack: contextlib.ExitStack, **kwargs) -> list:
    """Lock and prepare the grid folder (if any) and every target folder; the locks, held until the stack closes."""
    locks = []
    if isinstance(config, GridConfig):
        locks.append(stack.enter_context(claim_grid_folder(out, config, **kwargs)))
        kwargs = {**kwargs, "resume": True, "overwrite": False, "source_text": None}
    for target in targets:
        locks.append(stack.enter_context(claim_folder(target.out, target.config, **kwargs)))
    return locks


def _todo(target: Target, resume: bool, log) -> tuple[list[ChunkPlan], list[int], Provenance]:
    plan = plan_chunks(target.config)
    done = completed_chunks(target.out, target.config, plan, warn=log)
    todo = [c for c in plan if c.index not in done]
    return todo, sorted(done), Provenance(target.out, target.config, resume or target.cell is not None, sorted(done))


def _fit(client, work: list, locks: list, progress: bool, retries: int, chunk_fn) -> None:
    """Submit every chunk left, then record each in its provenance as it finishes (any order)."""
    distributed = _distributed()
    run = uuid.uuid4().hex[:8]  # task keys unique to this run: a long-lived scheduler may remember older ones
    futures = {}
    for target, todo, _, prov in work:
        spec = _spec(target.config)
        for chunk in todo:
            path = os.path.join(target.out, CHUNK_DIR, chunk.filename)
            key = f"jaxmoe-chunk-{target.config.hash}-{chunk.index}-{run}"
            future = client.submit(fit_chunk_task, spec, target.config.hash, chunk, path, chunk_fn, key=key,
                                   retries=retries, pure=False)
            futures[future] = (chunk, prov)
    bar = Progress([chunk.work for chunk, _ in futures.values()], 0, enabled=progress)
    pending, idle_since = set(futures), None
    while pending:
        try:
            done, pending = distributed.wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
        except distributed.TimeoutError:
            idle_since = _check_workers(client, idle_since, len(futures) - len(pending))
            continue
        idle_since = None
        for future in done:
            chunk, prov = futures[future]
            info = future.result()  # a task that failed for good raises here; the chunks already saved stay
            prov.chunk_done(chunk.index)
            for lock in locks:
                lock.beat()
            bar.update(info["seconds"], info["compile_seconds"], f"n = {chunk.sizes[0]}..{chunk.sizes[-1]}")


def _check_workers(client, idle_since: float | None, finished: int) -> float | None:
    """Raise when the cluster has had no worker for `NO_WORKERS_SECONDS` (workers that cannot start, e.g. on
    an import error, would otherwise leave the run waiting for ever); returns when that stretch began."""
    if client.scheduler_info().get("workers"):
        return None
    idle_since = time.monotonic() if idle_since is None else idle_since
    waited = time.monotonic() - idle_since
    require(waited < NO_WORKERS_SECONDS, "cluster", client.scheduler.address, f"the Dask cluster has had no workers for {waited:.0f} s (a worker that "
            f"cannot start says why in its log); the {finished} chunks finished are saved: run again with --resume")
    return idle_since
