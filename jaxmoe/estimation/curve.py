r"""`fit_curve`: every (sample size, replicate) fit of a Monte Carlo rate study in one call.

How the work is laid out (see experiments/README.md for the measurements behind it):

- **Keys.** Fit (n, r) uses `key(n, r) = fold_in(fold_in(PRNGKey(seed), n), r)`, split into a data key and an
  init key. Inputs are drawn as an `(L, d)` array and transposed, so the first n draws do not depend on the
  padded length L (partitionable threefry). A fit's data and start are therefore the same whatever the
  bucketing or chunking: results are a pure function of (setting, sizes, replicates, seed, solver), up to
  round-off in fits that stop at the iteration limit (their last steps are path-sensitive).
- **Buckets.** Sorted sizes are grouped while max/min <= `bucket_ratio`; each bucket is padded to its largest
  size with a mask (one compiled shape per bucket). The padded-work ratio sum(L) / sum(n) is reported.
- **Chunks.** Within a bucket, fits run in chunks of at most `chunk_size` fits, sized to `memory_gib`; the
  last chunk is padded with repeats of its last fit (counted as waste, then dropped) so each bucket
  compiles once.
- **Schedule.** With LM (default) a chunk's (fit, start) jobs run on a work queue of a few `vmap` lanes
  refilled as fits stop (`queue.py`); other solvers run in lockstep `vmap`, every lane waiting for the
  slowest (measured 1.4-2.4x slower per fit than one fit at a time; experiments/README.md).
- **Restarts.** With `restarts = M > 1`, each fit runs M starts as extra lanes and keeps the one with the
  lowest finite objective: `init="near_truth"` splits the truth M times (restart m gives the extra atoms
  to true atoms m, m+1, ...), `"random"` draws M uniform starts, `"mixed"` one near-truth and M-1 random.
  Starts depend on a fit's key only, so every fit's starts are drawn in one call compiled once per curve.
  Defaults (`default_starts`): 1 start for k = k*; for an over-fitted k, 32 near-truth splits with noise 0.3,
  since fewer or narrower starts stop in a higher local minimum in about half of the fits.
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
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmoe._errors import JaxMoEInputError, require, require_positive_int
from jaxmoe.estimation.initialization import near_truth_split, random_init
from jaxmoe.estimation import problem as _problem
from jaxmoe.estimation.problem import STATUS_NAMES, is_converged, least_squares_problem, ravel
from jaxmoe.estimation.solvers import Solver, get_solver, levenberg_marquardt_solver, run_solver
from jaxmoe.estimation.levenberg_marquardt import LMConfig
from jaxmoe.estimation.queue import solve_queue

INIT_NAMES = ("near_truth", "mixed", "random")

# Starts per fit, and the near-truth perturbation, by default. The over-fitted least squares has many local
# minima (experiments/README.md, "how many starts?"): on softmax-ridge with k = k* + 1 (n <= 10^4), best of 4
# splits with noise 0.1 reached the best minimum found by any of six start strategies in 45% of fits (within
# sigma^2 / n of it in 91%), best of 32 with noise 0.3 in 98.8% (100%) at 3.4x the CPU time (4.7x at
# n = 10^5); a pool with 64 starts finds lower minima still (32 reach them in 84%, 95% within sigma^2 / n).
EXACT_RESTARTS, OVERFIT_RESTARTS = 1, 32
EXACT_INIT_NOISE, OVERFIT_INIT_NOISE = 0.1, 0.3


def default_starts(overfitted: bool) -> tuple[int, float]:
    """(restarts, init_noise) that `fit_curve` uses by default for an exact-fitted or an over-fitted k."""
    return (OVERFIT_RESTARTS, OVERFIT_INIT_NOISE) if overfitted else (EXACT_RESTARTS, EXACT_INIT_NOISE)


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
    info: dict

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


def bucket_sizes(sizes: np.ndarray, ratio: float) -> list[np.ndarray]:
    """Group sorted sizes into buckets whose max/min <= ratio (each bucket is padded to its max)."""
    buckets, current = [], [sizes[0]]
    for n in sizes[1:]:
        if n / current[0] <= ratio:
            current.append(n)
        else:
            buckets.append(np.array(current))
            current = [n]
    buckets.append(np.array(current))
    return buckets


def draw_padded(key, setting, truth, n, length: int):
    """Data of one fit padded to `length`: x (d, L), y (L,), mask (L,); the first n draws do not depend on L."""
    k_x, k_eps = jax.random.split(key)
    dtype = jax.tree_util.tree_leaves(truth)[0].dtype
    # Draw (L, d) and transpose: row j is the j-th draw whatever L is.
    x = setting.inputs.sample(k_x, length, setting.d).T.astype(dtype)
    mask = (jnp.arange(length) < n).astype(dtype)
    y = setting.model(truth, x) + setting.sigma * jax.random.normal(k_eps, (length,), dtype)
    x = x * mask  # padded inputs are 0 (inside the input box); their residuals are masked out
    return x, y * mask, mask


def _chunk_cap(length, p, k, d, restarts, schedule, lanes, memory_gib, platform="cpu") -> tuple[int, int]:
    """(Most fits per chunk and device, queue lanes) within `memory_gib` per device. Working set per evaluation of
    one start ~ 8 bytes x L x (p for the Jacobian + ~6 k per-atom temporaries) x 2 (forward values and
    tangents), with L one block of samples for the queue's LM (`problem.default_block_size`: its normal equations
    are accumulated block by block; one block, L = n, on accelerators); a fit's data (x, y, mask) is
    8 x L x (d + 2). Queue: `lanes` evaluations at once + every fit's data; lockstep: every start of every fit at
    once (whole-sample evaluations)."""
    block = _problem.default_block_size(platform)
    block = min(length, block) if schedule == "queue" and block > 0 else length
    per_eval = 8 * block * (p + 6 * k) * 2
    per_data = 8 * length * (d + 2)
    budget = memory_gib * 2**30
    if schedule == "queue":  # lanes get at most half the budget, fits' data the rest
        width = max(1, min(lanes, int(budget / 2 // per_eval)))
        return max(1, int((budget - width * per_eval) // per_data)), width
    return max(1, int(budget // (restarts * per_eval + per_data))), lanes


@jax.jit
def _fit_keys(base, ns, rs):
    """key(n, r) = fold_in(fold_in(base, n), r), for a chunk at once."""
    return jax.vmap(lambda n, r: jax.random.fold_in(jax.random.fold_in(base, n), r))(ns, rs)


def _default_lanes(num_devices: int = 1, platform: str = "cpu") -> int:
    """Queue width per device. CPU: 2 lanes per core, shared among the devices (on the 2-core CPU, 4 lanes were
    best at n = 10^4, where the time goes; 2 lanes were best at n <= 1000, by < 40%; 16 lanes lost everywhere;
    experiments/README.md). GPU/TPU: 512 lanes (H100, standard sweep: LM run 2.4 s with 32 lanes, 1.9 s with
    128, 1.7 s with 512; experiments/results/h100/probe_lanes.json)."""
    if platform != "cpu":
        return 512
    return max(1, 2 * (os.cpu_count() or 1) // num_devices)


def _default_memory_gib(device) -> float:
    """Per-device memory budget: 2 GiB on CPU; on an accelerator half of what it reports (16 GiB if it does
    not), so that 512 lanes of whole-sample Jacobians fit (about 24 GiB at n = 10^5, p = 12)."""
    if device.platform == "cpu":
        return 2.0
    try:
        return 0.5 * device.memory_stats()["bytes_limit"] / 2**30
    except Exception:  # noqa: BLE001 -- backends without memory_stats
        return 16.0


def _prepare(key, n, *, setting, length):
    """One fit's padded data and the MSE of the truth on it."""
    truth = setting.truth_params()
    k_data, _ = jax.random.split(key)
    x, y, mask = draw_padded(k_data, setting, truth, n, length)
    objective_truth = least_squares_problem(setting.model, x, y, mask, gauge=False)[0].objective(ravel(truth)[0])
    return x, y, mask, objective_truth


def _starts(key, *, setting, model, init, restarts, noise, scale):
    """One fit's M starts and the exact-split reference start: functions of the fit's key only (not of n)."""
    truth = setting.truth_params()
    _, k_init = jax.random.split(key)
    keys = [jax.random.fold_in(k_init, m) for m in range(restarts)]  # start m does not depend on M
    if init == "near_truth":  # restart m splits the true atoms with offset m (which atoms get the extras)
        starts = [near_truth_split(keys[m], model, truth, setting.k_star, noise, offset=m) for m in range(restarts)]
    elif init == "mixed":  # one near-truth start, the others random
        starts = [near_truth_split(keys[0], model, truth, setting.k_star, noise)] + \
                 [random_init(k, model, scale) for k in keys[1:]]
    else:
        starts = [random_init(k, model, scale) for k in keys]
    starts = jnp.stack([ravel(model.fix_gauge(start))[0] for start in starts])
    exact = ravel(model.fix_gauge(near_truth_split(k_init, model, truth, setting.k_star, 0.0)))[0]
    return starts, exact


def _solve_chunk(keys, ns, starts, exact, *, setting, model, solver, length, restarts, reference, ref_iter,
                 schedule, lanes, block_size):
    """All fits of a chunk (of one device's share of it, under `shard_map`): draw the data, solve every
    (fit, start) job, keep each fit's best start. Also returns the work: every job's iterations and the
    lane-steps run."""
    x, y, mask, objective_truth = jax.vmap(functools.partial(_prepare, setting=setting, length=length))(keys, ns)
    num_fits, p = exact.shape
    if schedule == "queue":
        jobs = starts.reshape(num_fits * restarts, p)
        job_fit = jnp.repeat(jnp.arange(num_fits), restarts)
        budget = jnp.full((num_fits * restarts,), solver.max_iter)
        if reference:
            jobs = jnp.concatenate([jobs, exact])
            job_fit = jnp.concatenate([job_fit, jnp.arange(num_fits)])
            budget = jnp.concatenate([budget, jnp.full((num_fits,), ref_iter)])
        res = solve_queue(model, x, y, mask, jobs, job_fit, budget, lanes=lanes, config=solver.config,
                          block_size=block_size)
        lane_steps = res.steps * min(lanes, jobs.shape[0])
        fit_iterations = jnp.sum(res.iterations[: num_fits * restarts].reshape(num_fits, restarts), axis=1)
        if reference:
            fit_iterations = fit_iterations + res.iterations[num_fits * restarts:]
        res = res[:4]
        fits = jax.tree_util.tree_map(lambda a: a[: num_fits * restarts].reshape((num_fits, restarts) + a.shape[1:]),
                                      res)
        ref_objective = res[1][num_fits * restarts:] if reference else None
        theta, objective, iterations, status = fits
    else:
        def one(x1, y1, m1, starts1):
            problem, _ = least_squares_problem(model, x1, y1, m1, block_size=block_size)
            return jax.vmap(lambda t: run_solver(solver, problem, t))(starts1)

        states = jax.vmap(one)(x, y, mask, starts)
        theta, objective, iterations, status = states.theta, states.objective, states.iteration, states.status
        lane_steps = jnp.max(iterations) * iterations.size  # every lane runs until the slowest stops
        fit_iterations = jnp.sum(iterations, axis=1)
        if reference:
            ref_solver = levenberg_marquardt_solver(LMConfig(max_iter=ref_iter))
            ref_states = jax.vmap(lambda x1, y1, m1, t: run_solver(
                ref_solver, least_squares_problem(model, x1, y1, m1, block_size=block_size)[0], t))(x, y, mask, exact)
            ref_objective = ref_states.objective
            lane_steps = lane_steps + jnp.max(ref_states.iteration) * num_fits
            fit_iterations = fit_iterations + ref_states.iteration
    finite = jnp.isfinite(objective)
    best = jnp.argmin(jnp.where(finite, objective, jnp.inf), axis=1)
    pick = lambda a: jnp.take_along_axis(a, best.reshape((-1,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]
    theta, objective, iterations, status = pick(theta), pick(objective), pick(iterations), pick(status)
    if reference:
        # The reference is the better of the long refinement and the fit itself (both are local searches).
        objective_reference = jnp.minimum(jnp.where(jnp.isfinite(ref_objective), ref_objective, jnp.inf),
                                          jnp.where(jnp.isfinite(objective), objective, jnp.inf))
    else:
        objective_reference = jnp.full_like(objective, jnp.nan)
    _, unravel = ravel(model.zeros())
    params = jax.vmap(lambda t: unravel(t))(theta)
    return (params, objective, objective_truth, objective_reference, iterations, status, fit_iterations), \
        jnp.reshape(lane_steps, (1,)).astype(jnp.int32)


def fit_curve(
    setting,
    sample_sizes,
    replicates: int,
    seed: int = 0,
    *,
    solver: str | Solver = "lm",
    k: int | None = None,
    init: str = "near_truth",
    restarts: int | None = None,
    init_noise: float | None = None,
    init_scale: float = 3.0,
    reference: bool = False,
    reference_iterations: int = 3000,
    min_rtol: float = 1e-6,
    min_atol: float = 1e-12,
    bucket_ratio: float = 1.25,
    chunk_size: int | None = None,
    memory_gib: float | None = None,
    precision: str = "float64",
    schedule: str = "auto",
    lanes: int | None = None,
    devices=None,
) -> CurveFit:
    """Fit every (n, replicate) pair of a rate study for `setting` with `k` atoms (default `setting.k_fit`).

    Returns a `CurveFit`; failed or non-finite fits are flagged in `status`/`converged`, never dropped.
    `restarts` and `init_noise` default to 1 start with noise 0.1 for k = k*, and to the best of 32 near-truth
    splits with noise 0.3 for an over-fitted k (`default_starts`; measured in experiments/README.md).
    `schedule`: "queue" (LM only: lanes are refilled as fits finish, `queue.solve_queue`), "lockstep"
    (`vmap` of whole fits: every lane waits for the slowest), or "auto" (queue for LM, else lockstep).
    `lanes`: queue width per device (default: 2 per CPU core, shared among the devices; 512 on a GPU/TPU).
    `devices`: the devices the fits are sharded over (default: all local devices; module docstring).
    `precision="float64"` (default; see experiments/README.md for why) or `"float32"`.
    `memory_gib` bounds one device's working set (its share of a chunk's data and its lanes); default 2 GiB on
    CPU, half the device's memory on an accelerator. Lanes, block length and chunks change the speed, not the fits.

    Besides the fits, `info` reports the work: `waste_ratio` (padded samples / sum of n, bucketing and chunk
    padding), `sample_iterations` (sum over jobs of n x iterations, every start and the reference included),
    `executed_sample_iterations` (lane-steps x padded length: what the machine ran, frozen and idle queue
    lanes included) and their ratio `work_ratio`; `seconds`, `compile_seconds` (compile time the run waited
    for), `compile_total_seconds` (all compiling, some of it overlapped with running) and per-bucket figures in
    `buckets`.
    """
    sizes = np.asarray(sample_sizes)
    require(sizes.ndim == 1 and sizes.size >= 1, "sample_sizes", sample_sizes, "must be a non-empty 1-d list of sizes")
    require(np.all(sizes == np.round(sizes)) and np.all(sizes >= 1), "sample_sizes", sizes.tolist(),
            "must be integers >= 1")
    sizes = sizes.astype(np.int64)
    require(len(set(sizes.tolist())) == sizes.size, "sample_sizes", sizes.tolist(), "must not repeat a size")
    replicates = require_positive_int("replicates", replicates)
    model = setting.fitted_model(k)
    k_fit = model.k2 if hasattr(model, "k2") else model.k
    # Over-fitted least squares has many local minima (experiments/README.md): 32 wider starts by default.
    default_restarts, default_noise = default_starts(k_fit > setting.k_star)
    restarts = default_restarts if restarts is None else require_positive_int("restarts", restarts)
    init_noise = default_noise if init_noise is None else init_noise
    require(isinstance(seed, (int, np.integer)) and 0 <= seed < 2**31, "seed", seed, "must be an integer in [0, 2^31)")
    require(init in INIT_NAMES, "init", init, f"must be one of {list(INIT_NAMES)}")
    require(bucket_ratio >= 1.0, "bucket_ratio", bucket_ratio, "must be >= 1")
    require(precision in ("float32", "float64"), "precision", precision, "must be 'float32' or 'float64'")
    require(init_noise >= 0 and np.isfinite(init_noise), "init_noise", init_noise, "must be finite and >= 0")
    solver = get_solver(solver)
    require(schedule in ("auto", "queue", "lockstep"), "schedule", schedule, "must be 'auto', 'queue' or 'lockstep'")
    require(schedule != "queue" or solver.name == "lm", "schedule", schedule,
            f"'queue' needs the 'lm' solver, not {solver.name!r}")
    if schedule == "auto":
        schedule = "queue" if solver.name == "lm" else "lockstep"

    devices = list(jax.local_devices()) if devices is None else list(devices)
    require(len(devices) >= 1 and len(set(devices)) == len(devices), "devices", devices,
            "must be a non-empty list of distinct jax devices")
    num_devices = len(devices)
    require(lanes is None or (isinstance(lanes, (int, np.integer)) and lanes >= 1), "lanes", lanes,
            "must be None or an integer >= 1")
    platform = devices[0].platform
    require(memory_gib is None or (isinstance(memory_gib, (int, float, np.integer, np.floating))
                                   and np.isfinite(memory_gib) and memory_gib > 0), "memory_gib", memory_gib,
            "must be None or a finite number > 0")
    memory_gib = _default_memory_gib(devices[0]) if memory_gib is None else float(memory_gib)

    order = np.argsort(sizes)
    results: dict[tuple[int, int], tuple] = {}
    work = int(np.sum(sizes)) * replicates
    padded_work = 0
    chunk_sizes: dict[int, int] = {}
    buckets_info: list[dict] = []
    t_start = time.perf_counter()
    mesh = Mesh(np.array(devices), ("fits",))
    by_fit = NamedSharding(mesh, PartitionSpec("fits"))
    x64 = precision == "float64"
    with jax.enable_x64(x64), concurrent.futures.ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as pool:
        def compile_in_background(fn, *args):
            """Trace, lower and compile `fn` for `args` (abstract or concrete) in a worker thread."""
            def run():
                with jax.enable_x64(x64):
                    t0 = time.perf_counter()
                    compiled = fn.lower(*args).compile()
                    return compiled, time.perf_counter() - t0
            return pool.submit(run)

        base = jax.random.PRNGKey(int(seed))
        p = ravel(model.zeros())[0].size
        # Every fit's key and starts (a function of the key only), in one call compiled once per curve.
        jobs = [(int(n), r) for n in sizes[order] for r in range(replicates)]
        row_of = {job: i for i, job in enumerate(jobs)}
        all_keys = _fit_keys(base, jnp.asarray([n for n, _ in jobs]), jnp.asarray([r for _, r in jobs]))
        starts_fn = jax.jit(jax.vmap(functools.partial(
            _starts, setting=setting, model=model, init=init, restarts=restarts, noise=float(init_noise),
            scale=float(init_scale))))
        starts_future = compile_in_background(starts_fn, all_keys)
        float_dtype = jnp.result_type(float)
        starts_shape = (jax.ShapeDtypeStruct((len(jobs), restarts, p), float_dtype),
                        jax.ShapeDtypeStruct((len(jobs), p), float_dtype))

        plans = []
        for bucket in bucket_sizes(sizes[order], bucket_ratio):
            length = int(bucket.max())
            todo = [(int(n), r) for n in bucket for r in range(replicates)]
            cap, width = _chunk_cap(length, p, model.num_atoms, setting.d, restarts, schedule,
                                    lanes or _default_lanes(num_devices, platform), memory_gib, platform)
            size = min(len(todo), cap * num_devices if chunk_size is None else min(cap * num_devices, chunk_size))
            size = -(-len(todo) // -(-len(todo) // size))  # equal chunks: the last one wastes least
            size = -(-size // num_devices) * num_devices  # every device gets the same number of fits
            chunk_sizes[length] = size
            solve = functools.partial(
                _solve_chunk, setting=setting, model=model, solver=solver, length=length, restarts=restarts,
                reference=bool(reference), ref_iter=int(reference_iterations), schedule=schedule, lanes=width,
                block_size=_problem.default_block_size(platform))
            fn = jax.jit(jax.shard_map(solve, mesh=mesh, in_specs=(PartitionSpec("fits"),) * 4,
                                       out_specs=(PartitionSpec("fits"), PartitionSpec("fits")), check_vma=False))
            abstract = [jax.ShapeDtypeStruct((size,) + a.shape[1:], a.dtype, sharding=by_fit)
                        for a in (all_keys, jnp.asarray([1]), starts_shape[0], starts_shape[1])]
            plans.append(dict(length=length, todo=todo, size=size, width=width, fn=fn, abstract=abstract))
        # Largest bucket first: its long run hides the compiles of the others (ahead-of-time, in the background).
        plans.sort(key=lambda plan: -plan["length"])
        for plan in plans:
            plan["future"] = compile_in_background(plan.pop("fn"), *plan.pop("abstract"))

        t0 = time.perf_counter()
        compiled, compile_total = starts_future.result()
        compile_wait = time.perf_counter() - t0
        all_starts, all_exact = (np.asarray(a) for a in compiled(all_keys))
        all_keys = np.asarray(all_keys)

        for plan in plans:
            length, todo, size = plan["length"], plan["todo"], plan["size"]
            t0 = time.perf_counter()
            compiled, seconds = plan["future"].result()
            waited = time.perf_counter() - t0
            compile_total += seconds
            compile_wait += waited
            t_run = time.perf_counter()
            lane_steps = sample_iterations = 0
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                padded = chunk + [chunk[-1]] * (size - len(chunk))
                rows = np.asarray([row_of[job] for job in padded])
                ns = np.asarray([n for n, _ in padded], dtype=np.int64 if x64 else np.int32)
                args = jax.device_put((all_keys[rows], ns, all_starts[rows], all_exact[rows]), by_fit)
                out, steps = jax.block_until_ready(compiled(*args))
                padded_work += length * size
                out = jax.tree_util.tree_map(np.asarray, out)
                lane_steps += int(np.sum(steps))
                for i, job in enumerate(chunk):
                    results[job] = jax.tree_util.tree_map(lambda a: a[i], out)
                    sample_iterations += job[0] * int(out[6][i])
            buckets_info.append(dict(
                length=length, fits=len(todo), chunk_size=size, chunks=-(-len(todo) // size), lanes=plan["width"],
                compile_seconds=seconds, compile_wait_seconds=waited, run_seconds=time.perf_counter() - t_run,
                lane_steps=lane_steps, sample_iterations=sample_iterations,
                executed_sample_iterations=lane_steps * length))
    seconds = time.perf_counter() - t_start
    sample_iterations = sum(b["sample_iterations"] for b in buckets_info)
    executed = sum(b["executed_sample_iterations"] for b in buckets_info)
    return _assemble(sizes, replicates, results, dict(
        solver=solver.name, k=k_fit, init=init, schedule=schedule,
        restarts=restarts, init_noise=float(init_noise), reference=reference, precision=precision, seed=int(seed), replicates=replicates,
        work=work, padded_work=padded_work, waste_ratio=padded_work / work, seconds=seconds,
        compile_seconds=compile_wait, compile_total_seconds=compile_total, min_rtol=min_rtol, min_atol=min_atol,
        chunk_sizes=chunk_sizes, devices=num_devices, buckets=sorted(buckets_info, key=lambda b: b["length"]),
        iterations_total=int(sum(int(np.sum(r[6])) for r in results.values())),
        sample_iterations=sample_iterations, executed_sample_iterations=executed,
        work_ratio=executed / max(sample_iterations, 1),
    ))


def _assemble(sizes, replicates, results, info) -> CurveFit:
    def stack(i):
        return jax.tree_util.tree_map(
            lambda *xs: np.stack(xs).reshape((len(sizes), replicates) + np.shape(xs[0])),
            *[results[(int(n), r)][i] for n in sizes for r in range(replicates)])

    params, objective, truth_obj, ref_obj, iterations, status = (stack(i) for i in range(6))
    converged = np.asarray(is_converged(status))
    rtol, atol = info["min_rtol"], info["min_atol"]
    reached = np.isfinite(objective) & (objective <= ref_obj * (1 + rtol) + atol)
    return CurveFit(sizes, params, objective, truth_obj, ref_obj, reached, iterations, status, converged, info)
