r"""`fit_curve`: every (sample size, replicate) fit of a Monte Carlo rate study in one call.

How the work is laid out (see experiments/README.md for the measurements behind it):

- **Keys.** Fit (n, r) uses `key(n, r) = fold_in(fold_in(PRNGKey(seed), n), r)`, split into a data key and an
  init key. Inputs are drawn as an `(L, d)` array and transposed, so the first n draws do not depend on the
  padded length L (partitionable threefry). A fit's data and start are therefore the same whatever the
  bucketing or chunking: results are a pure function of (setting, sizes, replicates, seed, solver), up to
  round-off in fits that stop at the iteration limit (their last steps are path-sensitive). (`sampling.py`)
- **One program per curve.** With the work queue and sample blocks (the CPU default) a fit's sample count is
  a run-time value: its normal equations loop over the blocks that hold its n samples only
  (`problem.dynamic_blocks`), so every size of the curve runs in one compiled program, padded to the largest
  size rounded up to whole blocks; a fit costs its own n rounded up to 64 samples, and `info["waste_ratio"]`
  reports that padding. `info["programs_compiled"]` counts the XLA programs the call compiled (1 for any number
  of sizes), `programs_loaded` those it loaded from the persistent cache. Without blocks (accelerators) or in
  lockstep, sorted sizes are grouped while max/min <= `bucket_ratio` (default 1.25) and each bucket is its
  own shape.
- **Chunks.** Within a bucket, fits run in chunks of at most `chunk_size` fits, sized to `memory_gib`; the
  last chunk is padded with repeats of its cheapest fit (counted as waste, then dropped) so each bucket
  compiles once. (`plan.py`)
- **Schedule.** With a solver that has a fresh state (`Solver.fresh`: LM, the default) a chunk's (fit, start)
  jobs run on a work queue of a few `vmap` lanes refilled as fits stop (`queue.py`); other solvers run in
  lockstep `vmap`, every lane waiting for the slowest (measured 1.4-2.4x slower per fit than one fit at a
  time; experiments/README.md). (`chunk.py`)
- **Restarts.** With `restarts = M > 1`, each fit runs M starts as extra lanes and keeps the one with the
  lowest finite objective: `init="near_truth"` splits the truth M times (restart m gives the extra atoms
  to true atoms m, m+1, ...), `"random"` draws M uniform starts, `"mixed"` one near-truth and M-1 random.
  Starts depend on a fit's key only; each chunk draws its fits' starts inside its program.
  Defaults (`default_starts`): 1 start for k = k*; for an over-fitted k, 32 near-truth splits with noise 0.3,
  since fewer or narrower starts stop in a higher local minimum in about half of the fits. `prune_at` > 0
  prunes them by successive halving (each fit's `prune_keep` best at iteration `prune_at` go on; off by
  default). (`options.py`, `chunk.py`)
- **Compilation.** Each chunk shape is compiled once (in a background thread, while earlier buckets run where
  there are several); the chunk's program draws its fits' keys, data and starts itself, so nothing else is
  compiled for the fits. `info["compile_seconds"]` is the compile time the run waited for (so
  `seconds - compile_seconds` is the run time), `info["compile_total_seconds"]` the sum of all compile times.
  Across calls and processes JAX's persistent cache loads programs seen before instead of compiling them:
  jaxmoe turns it on when imported, in the user's cache folder (`jaxmoe/runtime.py`;
  `JAXMOE_COMPILATION_CACHE=0` turns it off, `JAXMOE_CACHE_DIR` moves it). Beside it, each chunk program is
  kept exported (`exported.py`: traced and lowered once, keyed by every value it depends on), so a later
  process loads it instead of tracing it again.
- **Devices.** The fits of a chunk are sharded over `devices` (default: all local devices, `jax.local_devices()`)
  with `shard_map`: each device runs its own work queue over its share of the chunk (a chunk is padded to a
  multiple of the device count), the shares balanced by their samples (`plan.device_order`). On a CPU host
  `jaxmoe.use_all_cores()`, called before JAX starts (the CLI does), makes each core a device; the fits are
  then the same bit for bit whatever the core count (tests/sharding_test.py: 2 and 4 devices, 3 checked by
  hand; one device agrees to round-off).
  **Several hosts** (`jax.distributed`): start one process per host with `jax.distributed.initialize(...)`
  and run a different share of the study in each, e.g. `fit_curve(setting, sizes, replicates, seed=seed)`
  with disjoint `sizes` per process (`jax.process_index()` picks the share), since fit (n, r)'s data and
  starts depend only on (seed, n, r), and the shares' `CurveFit`s are the same fits as one big call gives.
  `fit_curve` itself shards only over its process's local devices (not tested across hosts here).

The code follows the same steps: `FitOptions` (options.py) owns the defaults and their checks; `plan_curve`
(plan.py) validates and lays out the buckets and chunks (a `CurvePlan`, no device work); `run_plan` compiles
each chunk shape's `build_chunk_solver` in the background and runs the chunks;
each chunk returns a `ChunkResult`, and the fits come back as a `CurveFit` whose `info` is a `CurveInfo`.
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
import dataclasses
import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmoe.validation import require
from jaxmoe.estimation.chunk import ChunkResult
from jaxmoe.estimation.options import FitOptions
from jaxmoe.estimation.compiles import ProgramCount, count_programs
from jaxmoe.estimation.exported import exported_lowering
from jaxmoe.estimation.plan import (BucketPlan, CurvePlan, bucket_sizes, build_chunk_solver, chunk_avals,
                                    chunk_program_key, device_order, evaluated_samples, plan_curve)
from jaxmoe.estimation.sampling import draw_padded
from jaxmoe.estimation.status import STATUS_NAMES, is_converged

__all__ = ["CurveFit", "CurveInfo", "bucket_sizes", "draw_padded", "fit_curve", "run_plan"]


@dataclasses.dataclass(frozen=True, eq=False)
class CurveInfo(collections.abc.Mapping):
    """What `fit_curve` did, besides the fits: typed fields, readable as a read-only dict (`info["k"]`,
    `info.get(...)`, `info.items()`, `"waste_ratio" in info`; `dict(info)` is a plain dict). `buckets` holds one
    dict per bucket (length, fits, chunk_size, chunks, lanes, compile_seconds, compile_wait_seconds,
    run_seconds, lane_steps, sample_iterations, executed_sample_iterations, device_samples: the samples each
    device's lanes evaluated, whose spread shows how evenly the devices were loaded), in increasing length."""

    solver: str
    k: int
    init: str
    schedule: str  # "queue" or "lockstep"
    restarts: int
    init_noise: float
    init_noise_decay: float  # noise at n: init_noise * n ** -init_noise_decay (0: the same at every n)
    prune_at: int  # successive halving of the starts: the pruning iteration (0: off)
    prune_keep: int  # starts per fit that go on past prune_at
    reference: bool
    precision: str
    seed: int
    replicates: int
    work: int  # sum of n over fits
    padded_work: int  # samples one evaluation of each fit run costs, summed (chunk padding included): its n
    # rounded up to whole blocks with run-time sample counts (`plan.runtime_sizes`), else its bucket's L
    waste_ratio: float  # padded_work / work
    seconds: float
    compile_seconds: float  # compile time the run waited for
    compile_total_seconds: float  # every compile, overlapped with running or not
    min_rtol: float
    min_atol: float
    chunk_sizes: dict  # {L: fits per chunk}
    devices: int
    buckets: list
    iterations_total: int  # every job's iterations (every start and the reference)
    sample_iterations: int  # sum over jobs of n x iterations
    executed_sample_iterations: int  # samples the lanes evaluated, summed over lane-steps: what the machine
    # ran, idle and frozen lanes included (a step costs the longest active fit of its lanes, or L)
    work_ratio: float  # executed_sample_iterations / sample_iterations
    programs_compiled: int  # XLA programs compiled during the call (`compiles.count_programs`): 1 per chunk shape
    programs_loaded: int  # programs loaded from the persistent compilation cache instead

    def __getitem__(self, key: str) -> Any:
        if key not in _INFO_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(_INFO_KEYS)

    def __len__(self) -> int:
        return len(_INFO_KEYS)


_INFO_KEYS = tuple(f.name for f in dataclasses.fields(CurveInfo))


class CurveFit(NamedTuple):
    """Every fit of a rate study; arrays are indexed `[size, replicate]` (params' leaves `[size, replicate, ...]`).

    - `objective`: final MSE $\\frac1n\\sum_j (Y_j - f_{\\hat G}(X_j))^2$; `objective_truth`: the same at $G^*$;
    - `objective_reference`: MSE of a long LM refinement started at the (split) truth, NaN if not requested;
    - `reached_minimum`: objective <= reference * (1 + `min_rtol`) + `min_atol` (False where no reference);
    - `status`: solver status code (see `STATUS_NAMES`), `converged`: a stopping rule held with finite values.
    """

    sizes: np.ndarray
    params: Any
    objective: np.ndarray
    objective_truth: np.ndarray
    objective_reference: np.ndarray
    reached_minimum: np.ndarray
    iterations: np.ndarray
    status: np.ndarray
    converged: np.ndarray
    info: CurveInfo

    @property
    def converged_fraction(self) -> float:
        return float(np.mean(self.converged))

    @property
    def reached_minimum_fraction(self) -> float:
        return float(np.mean(self.reached_minimum))

    def summary(self) -> dict:
        """Counts a report must show: fits, converged, failed by status, reached-minimum fraction, work."""
        counts = {STATUS_NAMES[s]: int(np.sum(self.status == s)) for s in STATUS_NAMES}
        return {
            "fits": int(self.objective.size),
            "converged_fraction": self.converged_fraction,
            "status_counts": counts,
            "reached_minimum_fraction": self.reached_minimum_fraction if self.info.get("reference") else None,
            "below_truth_fraction": float(np.mean(self.objective <= self.objective_truth)),
            **{k: self.info[k] for k in ("waste_ratio", "seconds", "compile_seconds") if k in self.info},
        }


def fit_curve(setting, sample_sizes, replicates: int, seed: int = 0, *, options: FitOptions | None = None,
              **overrides) -> CurveFit:
    """Fit every (n, replicate) pair of a rate study for `setting` with `k` atoms (default `setting.k_fit`).

    Returns a `CurveFit`; failed or non-finite fits are flagged in `status`/`converged`, never dropped.
    The options are `options` (a `FitOptions`; default `FitOptions()`) with `overrides` (its field names:
    solver, k, init, restarts, init_noise, init_noise_decay, init_scale, prune_at, prune_keep, reference, reference_iterations, min_rtol, min_atol,
    bucket_ratio, padded_length, chunk_size, memory_gib, precision, schedule, lanes, devices, block_size) applied;
    `FitOptions` and options.py document each and its default. In short: `restarts` and `init_noise` default
    to 1 start with noise 0.1 for k = k*, and to the best of 32 near-truth splits with noise 0.3 for an
    over-fitted k (`default_starts`); `schedule` "auto" runs the work queue for a solver with a fresh state
    (LM), else lockstep `vmap`; lanes, block length, chunks and devices change the speed, not the fits.
    Bad input is one line (`JaxMoEInputError`: field=value: what is allowed) before any work.

    Besides the fits, `info` (a `CurveInfo`) reports the work: `waste_ratio` (padded samples / sum of n,
    bucketing and chunk padding), `sample_iterations` (sum over jobs of n x iterations, every start and the
    reference included), `executed_sample_iterations` (samples the lanes evaluated: what the machine ran, frozen
    and idle queue lanes included) and their ratio `work_ratio`; `programs_compiled` / `programs_loaded` (XLA
    programs compiled, or loaded from the persistent cache, during the call); `seconds`, `compile_seconds`
    (compile time the run waited for), `compile_total_seconds` (all compiling, some of it overlapped with
    running) and per-bucket figures in `buckets`.
    """
    require(options is None or isinstance(options, FitOptions), "options", options, "must be a FitOptions or None")
    options = (FitOptions() if options is None else options).replace(**overrides)
    return run_plan(plan_curve(setting, sample_sizes, replicates, seed, options))


def _compile_in_background(pool, x64: bool, key, fn, *args) -> concurrent.futures.Future:
    """Trace, lower and compile `fn` for `args` (abstract or concrete) in a worker thread, or load its exported
    module (`exported.py`, by `key`; None: always traced): a future of (compiled, seconds)."""
    def run():
        with jax.enable_x64(x64):  # the precision is thread-local: set it in the worker too
            t0 = time.perf_counter()
            compiled = exported_lowering(key, fn, *args)
            return compiled, time.perf_counter() - t0
    return pool.submit(run)


# Compiled chunk programs of earlier calls in this process, by `plan.chunk_program_key` (most recent last): a
# later call with the same statics (a sweep's next chunk, a notebook's next curve) neither retraces nor loads.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_PROGRAMS_KEPT = 8


def _chunk_programs(plan: CurvePlan, mesh: Mesh, pool) -> list[concurrent.futures.Future]:
    """One compile per distinct chunk program: buckets that share one (every bucket, with run-time sample
    counts) share it, and a program an earlier call compiled is reused. A future per bucket, in run order."""
    futures: dict = {}
    stable = [chunk_program_key(plan, bucket, mesh) for bucket in plan.buckets]
    keys = [key or ("unshared", id(bucket)) for key, bucket in zip(stable, plan.buckets)]
    for key, own, bucket in zip(keys, stable, plan.buckets):
        if key in futures:
            continue
        if key in _PROGRAMS:
            _PROGRAMS.move_to_end(key)
            futures[key] = concurrent.futures.Future()
            futures[key].set_result((_PROGRAMS[key], 0.0))
        else:
            futures[key] = _compile_in_background(pool, plan.x64, own, build_chunk_solver(plan, bucket, mesh),
                                                  *chunk_avals(plan, bucket, mesh))
            if key[0] != "unshared":
                futures[key].add_done_callback(functools.partial(_keep_program, key))
    return [futures[key] for key in keys]


def _keep_program(key, future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is None:
        _PROGRAMS[key] = future.result()[0]
        while len(_PROGRAMS) > _PROGRAMS_KEPT:
            _PROGRAMS.popitem(last=False)


def run_plan(plan: CurvePlan) -> CurveFit:
    """Run a `CurvePlan`: every bucket's chunks (their program compiled in the background, ahead of the bucket
    that needs it; each chunk draws its fits' keys, data and starts itself) and assemble the `CurveFit`."""
    t_start = time.perf_counter()
    mesh = Mesh(np.array(plan.options.devices), ("fits",))
    pool = concurrent.futures.ThreadPoolExecutor(min(2, os.cpu_count() or 1))
    try:
        with jax.enable_x64(plan.x64), count_programs() as programs:
            futures = _chunk_programs(plan, mesh, pool)
            results: dict[tuple[int, int], ChunkResult] = {}
            seen: set = set()
            buckets = [_run_bucket(plan, bucket, future, mesh, results, seen)
                       for bucket, future in zip(plan.buckets, futures)]
    except BaseException:  # Ctrl-C or an error: leave the compiles in progress, run nothing more
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    compile_total = sum(b["compile_seconds"] for b in buckets)
    compile_wait = sum(b["compile_wait_seconds"] for b in buckets)
    return _assemble(plan, results, _curve_info(plan, results, buckets, time.perf_counter() - t_start,
                                                compile_wait, compile_total, programs))


def _run_bucket(plan: CurvePlan, bucket: BucketPlan, future, mesh: Mesh, results: dict, seen: set) -> dict:
    """Run every chunk of `bucket` (its compiled function from `future`); store each fit's `ChunkResult` in
    `results`; return the bucket's figures (a program shared with an earlier bucket counts its compile once:
    `seen`)."""
    t0 = time.perf_counter()
    compiled, seconds = future.result()
    waited = time.perf_counter() - t0
    seconds = 0.0 if id(future) in seen else seconds
    seen.add(id(future))
    t_run = time.perf_counter()
    lane_steps = lane_samples = sample_iterations = padded_work = 0
    device_samples = np.zeros(len(plan.options.devices), dtype=np.int64)
    size = bucket.chunk_size
    int_dtype = np.int64 if plan.x64 else np.int32
    seed = jax.device_put(np.asarray(plan.seed, int_dtype), NamedSharding(mesh, PartitionSpec()))
    for start in range(0, len(bucket.jobs), size):
        chunk = list(bucket.jobs[start:start + size])
        padded = chunk + [min(chunk)] * (size - len(chunk))  # repeats of the cheapest fit, dropped below
        costs = [evaluated_samples(plan, bucket, n) for n, _ in padded]
        order = device_order(costs, len(plan.options.devices))  # balanced devices (plan.py docstring)
        ns, rs = (np.asarray(a, dtype=int_dtype) for a in zip(*[padded[i] for i in order]))
        padded_work += sum(costs)
        args = jax.device_put((ns, rs), NamedSharding(mesh, PartitionSpec("fits")))
        out, work = jax.block_until_ready(compiled(seed, *args))
        out = jax.tree_util.tree_map(np.asarray, out)
        work = np.asarray(work)
        lane_steps += int(np.sum(work[:, 0]))
        lane_samples += int(np.sum(work[:, 1]))
        device_samples += work[:, 1].astype(np.int64)
        for position, i in enumerate(order):
            if i < len(chunk):  # not a padding repeat
                results[chunk[i]] = jax.tree_util.tree_map(lambda a: a[position], out)
                sample_iterations += chunk[i][0] * int(out.fit_iterations[position])
    return dict(length=bucket.length, fits=len(bucket.jobs), chunk_size=size, chunks=bucket.chunks,
                lanes=bucket.lanes, compile_seconds=seconds, compile_wait_seconds=waited,
                run_seconds=time.perf_counter() - t_run, lane_steps=lane_steps, sample_iterations=sample_iterations,
                executed_sample_iterations=lane_samples, padded_work=padded_work,
                device_samples=device_samples.tolist())


def _curve_info(plan: CurvePlan, results: dict, buckets: list[dict], seconds: float, compile_wait: float,
                compile_total: float, programs: ProgramCount) -> CurveInfo:
    o = plan.options
    work = int(np.sum(plan.sizes)) * plan.replicates
    padded_work = sum(b["padded_work"] for b in buckets)
    sample_iterations = sum(b["sample_iterations"] for b in buckets)
    executed = sum(b["executed_sample_iterations"] for b in buckets)
    return CurveInfo(
        solver=o.solver.name, k=o.k, init=o.init, schedule=o.schedule, restarts=o.restarts, init_noise=o.init_noise,
        init_noise_decay=o.init_noise_decay, prune_at=o.prune_at, prune_keep=o.prune_keep, reference=o.reference, precision=o.precision, seed=plan.seed, replicates=plan.replicates, work=work,
        padded_work=padded_work, waste_ratio=padded_work / work, seconds=seconds, compile_seconds=compile_wait,
        compile_total_seconds=compile_total, min_rtol=o.min_rtol, min_atol=o.min_atol,
        chunk_sizes={b.length: b.chunk_size for b in sorted(plan.buckets, key=lambda b: b.length)},
        devices=len(o.devices), buckets=sorted(buckets, key=lambda b: b["length"]),
        iterations_total=int(sum(int(np.sum(r.fit_iterations)) for r in results.values())),
        sample_iterations=sample_iterations, executed_sample_iterations=executed,
        work_ratio=executed / max(sample_iterations, 1), programs_compiled=programs.compiled,
        programs_loaded=programs.loaded)


def _assemble(plan: CurvePlan, results: dict, info: CurveInfo) -> CurveFit:
    """Stack every fit's `ChunkResult` into `[size, replicate]` arrays, sizes in the caller's order."""
    sizes, replicates = plan.sizes, plan.replicates

    def stack(field):
        return jax.tree_util.tree_map(
            lambda *xs: np.stack(xs).reshape((len(sizes), replicates) + np.shape(xs[0])),
            *[getattr(results[(int(n), r)], field) for n in sizes for r in range(replicates)])

    fields = ("params", "objective", "objective_truth", "objective_reference", "iterations", "status")
    params, objective, truth_obj, ref_obj, iterations, status = (stack(f) for f in fields)
    converged = np.asarray(is_converged(status))
    reached = np.isfinite(objective) & (objective <= ref_obj * (1 + info.min_rtol) + info.min_atol)
    return CurveFit(sizes, params, objective, truth_obj, ref_obj, reached, iterations, status, converged, info)
