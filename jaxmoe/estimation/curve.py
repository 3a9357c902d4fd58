r"""`fit_curve`: every (sample size, replicate) fit of a Monte Carlo rate study in one call.

How the work is laid out (see experiments/README.md for the measurements behind it):

- **Keys.** Fit (n, r) uses `key(n, r) = fold_in(fold_in(PRNGKey(seed), n), r)`, split into a data key and an
  init key. Inputs are drawn as an `(L, d)` array and transposed, so the first n draws do not depend on the
  padded length L (partitionable threefry). A fit's data and start are therefore the same whatever the
  bucketing or chunking: results are a pure function of (setting, sizes, replicates, seed, solver), up to
  round-off in fits that stop at the iteration limit (their last steps are path-sensitive). (`sampling.py`)
- **Buckets.** Sorted sizes are grouped while max/min <= `bucket_ratio`; each bucket is padded to its largest
  size with a mask (one compiled shape per bucket). The padded-work ratio sum(L) / sum(n) is reported.
- **Chunks.** Within a bucket, fits run in chunks of at most `chunk_size` fits, sized to `memory_gib`; the
  last chunk is padded with repeats of its last fit (counted as waste, then dropped) so each bucket
  compiles once. (`plan.py`)
- **Schedule.** With a solver that has a fresh state (`Solver.fresh`: LM, the default) a chunk's (fit, start)
  jobs run on a work queue of a few `vmap` lanes refilled as fits stop (`queue.py`); other solvers run in
  lockstep `vmap`, every lane waiting for the slowest (measured 1.4-2.4x slower per fit than one fit at a
  time; experiments/README.md). (`chunk.py`)
- **Restarts.** With `restarts = M > 1`, each fit runs M starts as extra lanes and keeps the one with the
  lowest finite objective: `init="near_truth"` splits the truth M times (restart m gives the extra atoms
  to true atoms m, m+1, ...), `"random"` draws M uniform starts, `"mixed"` one near-truth and M-1 random.
  Starts depend on a fit's key only, so every fit's starts are drawn in one call compiled once per curve.
  Defaults (`default_starts`): 1 start for k = k*; for an over-fitted k, 32 near-truth splits with noise 0.3,
  since fewer or narrower starts stop in a higher local minimum in about half of the fits. (`options.py`)
- **Compilation.** Each bucket is one compiled shape. Tracing and compiling run in background threads, ahead
  of the bucket that needs it, while earlier buckets execute (largest bucket first, so its long run hides the other
  compiles); `info["compile_seconds"]` is the compile time the run waited for (so `seconds - compile_seconds`
  is the run time), `info["compile_total_seconds"]` the sum of all compile times, overlapped or not.
  Across calls and processes, JAX's persistent cache removes compile time for shapes seen before:
  `jax.config.update("jax_compilation_cache_dir", "/path/to/cache")` before the first fit
  (experiments/speed_and_scale.md has the measurements).
- **Devices.** The fits of a chunk are sharded over `devices` (default: all local devices, `jax.local_devices()`)
  with `shard_map`: each device runs its own work queue over its share of the chunk (a chunk is padded to a
  multiple of the device count), so a multi-device host needs no change in user code and gives the same fits
  (tests/sharding_test.py: 4 CPU devices vs 1). On a CPU host, each core can be a device:
  `XLA_FLAGS=--xla_force_host_platform_device_count=<cores>` before JAX starts.
  **Several hosts** (`jax.distributed`): start one process per host with `jax.distributed.initialize(...)`
  and run a different share of the study in each, e.g. `fit_curve(setting, sizes, replicates, seed=seed)`
  with disjoint `sizes` per process (`jax.process_index()` picks the share), since fit (n, r)'s data and
  starts depend only on (seed, n, r), and the shares' `CurveFit`s are the same fits as one big call gives.
  `fit_curve` itself shards only over its process's local devices (not tested across hosts here).

The code follows the same steps: `FitOptions` (options.py) owns the defaults and their checks; `plan_curve`
(plan.py) validates and lays out the buckets and chunks (a `CurvePlan`, no device work); `run_plan` draws
every fit's key and starts, compiles each bucket's `build_chunk_solver` in the background and runs its chunks;
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
from jaxmoe.estimation.plan import BucketPlan, CurvePlan, bucket_sizes, build_chunk_solver, chunk_avals, plan_curve
from jaxmoe.estimation.sampling import draw_padded, fit_keys, fit_starts
from jaxmoe.estimation.status import STATUS_NAMES, is_converged

__all__ = ["CurveFit", "CurveInfo", "bucket_sizes", "draw_padded", "fit_curve", "run_plan"]


@dataclasses.dataclass(frozen=True, eq=False)
class CurveInfo(collections.abc.Mapping):
    """What `fit_curve` did, besides the fits: typed fields, readable as a read-only dict (`info["k"]`,
    `info.get(...)`, `info.items()`, `"waste_ratio" in info`; `dict(info)` is a plain dict). `buckets` holds one
    dict per bucket (length, fits, chunk_size, chunks, lanes, compile_seconds, compile_wait_seconds,
    run_seconds, lane_steps, sample_iterations, executed_sample_iterations), in increasing length."""

    solver: str
    k: int
    init: str
    schedule: str  # "queue" or "lockstep"
    restarts: int
    init_noise: float
    reference: bool
    precision: str
    seed: int
    replicates: int
    work: int  # sum of n over fits
    padded_work: int  # sum of L over fits run, chunk padding included
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
    executed_sample_iterations: int  # lane-steps x L: what the machine ran, idle and frozen lanes included
    work_ratio: float  # executed_sample_iterations / sample_iterations

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
    solver, k, init, restarts, init_noise, init_scale, reference, reference_iterations, min_rtol, min_atol,
    bucket_ratio, chunk_size, memory_gib, precision, schedule, lanes, devices, block_size) applied;
    `FitOptions` and options.py document each and its default. In short: `restarts` and `init_noise` default
    to 1 start with noise 0.1 for k = k*, and to the best of 32 near-truth splits with noise 0.3 for an
    over-fitted k (`default_starts`); `schedule` "auto" runs the work queue for a solver with a fresh state
    (LM), else lockstep `vmap`; lanes, block length, chunks and devices change the speed, not the fits.
    Bad input is one line (`JaxMoEInputError`: field=value: what is allowed) before any work.

    Besides the fits, `info` (a `CurveInfo`) reports the work: `waste_ratio` (padded samples / sum of n,
    bucketing and chunk padding), `sample_iterations` (sum over jobs of n x iterations, every start and the
    reference included), `executed_sample_iterations` (lane-steps x padded length: what the machine ran, frozen
    and idle queue lanes included) and their ratio `work_ratio`; `seconds`, `compile_seconds` (compile time the
    run waited for), `compile_total_seconds` (all compiling, some of it overlapped with running) and
    per-bucket figures in `buckets`.
    """
    require(options is None or isinstance(options, FitOptions), "options", options, "must be a FitOptions or None")
    options = (FitOptions() if options is None else options).replace(**overrides)
    return run_plan(plan_curve(setting, sample_sizes, replicates, seed, options))


class _Inputs(NamedTuple):
    """Every fit's key and starts (row i: fit `plan.jobs[i]`), on the host."""

    keys: np.ndarray
    starts: np.ndarray
    exact: np.ndarray
    row_of: dict


def _compile_in_background(pool, x64: bool, fn, *args) -> concurrent.futures.Future:
    """Trace, lower and compile `fn` for `args` (abstract or concrete) in a worker thread:
    a future of (compiled, seconds)."""
    def run():
        with jax.enable_x64(x64):  # the precision is thread-local: set it in the worker too
            t0 = time.perf_counter()
            compiled = fn.lower(*args).compile()
            return compiled, time.perf_counter() - t0
    return pool.submit(run)


def _starts_fn(plan: CurvePlan):
    """Every fit's starts from its key, in one call (`vmap` of `fit_starts`)."""
    o = plan.options
    return jax.jit(jax.vmap(functools.partial(
        fit_starts, setting=plan.setting, model=plan.model, init=o.init, restarts=o.restarts,
        noise=float(o.init_noise), scale=float(o.init_scale))))


def run_plan(plan: CurvePlan) -> CurveFit:
    """Run a `CurvePlan`: keys and starts of every fit, then every bucket's chunks (compiled in the background,
    ahead of the bucket that needs them), and assemble the `CurveFit`."""
    t_start = time.perf_counter()
    mesh = Mesh(np.array(plan.options.devices), ("fits",))
    by_fit = NamedSharding(mesh, PartitionSpec("fits"))
    pool = concurrent.futures.ThreadPoolExecutor(min(2, os.cpu_count() or 1))
    try:
        with jax.enable_x64(plan.x64):
            compile_ = functools.partial(_compile_in_background, pool, plan.x64)
            keys = fit_keys(jax.random.PRNGKey(plan.seed), jnp.asarray([n for n, _ in plan.jobs]),
                            jnp.asarray([r for _, r in plan.jobs]))
            starts_future = compile_(_starts_fn(plan), keys)
            key = jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype)
            futures = [compile_(build_chunk_solver(plan, bucket, mesh), *chunk_avals(plan, bucket, key, by_fit))
                       for bucket in plan.buckets]
            t0 = time.perf_counter()
            compiled, compile_total = starts_future.result()
            compile_wait = time.perf_counter() - t0
            starts, exact = (np.asarray(a) for a in compiled(keys))
            inputs = _Inputs(np.asarray(keys), starts, exact, {job: i for i, job in enumerate(plan.jobs)})
            results: dict[tuple[int, int], ChunkResult] = {}
            buckets = [_run_bucket(plan, bucket, future, inputs, by_fit, results)
                       for bucket, future in zip(plan.buckets, futures)]
    except BaseException:  # Ctrl-C or an error: leave the compiles in progress, run nothing more
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    compile_total += sum(b["compile_seconds"] for b in buckets)
    compile_wait += sum(b["compile_wait_seconds"] for b in buckets)
    return _assemble(plan, results, _curve_info(plan, results, buckets, time.perf_counter() - t_start,
                                                compile_wait, compile_total))


def _run_bucket(plan: CurvePlan, bucket: BucketPlan, future, inputs: _Inputs, by_fit, results: dict) -> dict:
    """Run every chunk of `bucket` (its compiled function from `future`); store each fit's `ChunkResult` in
    `results`; return the bucket's figures."""
    t0 = time.perf_counter()
    compiled, seconds = future.result()
    waited = time.perf_counter() - t0
    t_run = time.perf_counter()
    lane_steps = sample_iterations = 0
    size = bucket.chunk_size
    for start in range(0, len(bucket.jobs), size):
        chunk = list(bucket.jobs[start:start + size])
        padded = chunk + [chunk[-1]] * (size - len(chunk))  # repeats of the last fit, dropped below
        rows = np.asarray([inputs.row_of[job] for job in padded])
        ns = np.asarray([n for n, _ in padded], dtype=np.int64 if plan.x64 else np.int32)
        args = jax.device_put((inputs.keys[rows], ns, inputs.starts[rows], inputs.exact[rows]), by_fit)
        out, steps = jax.block_until_ready(compiled(*args))
        out = jax.tree_util.tree_map(np.asarray, out)
        lane_steps += int(np.sum(steps))
        for i, job in enumerate(chunk):
            results[job] = jax.tree_util.tree_map(lambda a: a[i], out)
            sample_iterations += job[0] * int(out.fit_iterations[i])
    return dict(length=bucket.length, fits=len(bucket.jobs), chunk_size=size, chunks=bucket.chunks,
                lanes=bucket.lanes, compile_seconds=seconds, compile_wait_seconds=waited,
                run_seconds=time.perf_counter() - t_run, lane_steps=lane_steps, sample_iterations=sample_iterations,
                executed_sample_iterations=lane_steps * bucket.length)


def _curve_info(plan: CurvePlan, results: dict, buckets: list[dict], seconds: float, compile_wait: float,
                compile_total: float) -> CurveInfo:
    o = plan.options
    work = int(np.sum(plan.sizes)) * plan.replicates
    padded_work = sum(b["length"] * b["chunk_size"] * b["chunks"] for b in buckets)
    sample_iterations = sum(b["sample_iterations"] for b in buckets)
    executed = sum(b["executed_sample_iterations"] for b in buckets)
    return CurveInfo(
        solver=o.solver.name, k=o.k, init=o.init, schedule=o.schedule, restarts=o.restarts, init_noise=o.init_noise,
        reference=o.reference, precision=o.precision, seed=plan.seed, replicates=plan.replicates, work=work,
        padded_work=padded_work, waste_ratio=padded_work / work, seconds=seconds, compile_seconds=compile_wait,
        compile_total_seconds=compile_total, min_rtol=o.min_rtol, min_atol=o.min_atol,
        chunk_sizes={b.length: b.chunk_size for b in sorted(plan.buckets, key=lambda b: b.length)},
        devices=len(o.devices), buckets=sorted(buckets, key=lambda b: b["length"]),
        iterations_total=int(sum(int(np.sum(r.fit_iterations)) for r in results.values())),
        sample_iterations=sample_iterations, executed_sample_iterations=executed,
        work_ratio=executed / max(sample_iterations, 1))


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
