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
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoe._errors import JaxMoEInputError, require, require_positive_int
from jaxmoe.estimation.initialization import near_truth_split, random_init
from jaxmoe.estimation.problem import STATUS_NAMES, is_converged, least_squares_problem, ravel
from jaxmoe.estimation.solvers import Solver, get_solver, levenberg_marquardt_solver, run_solver
from jaxmoe.estimation.levenberg_marquardt import LMConfig
from jaxmoe.estimation.queue import solve_queue

INIT_NAMES = ("near_truth", "mixed", "random")


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


def _chunk_cap(length, p, k, d, restarts, schedule, lanes, memory_gib) -> int:
    """(Most fits per chunk, queue lanes) within `memory_gib`. Working set per evaluation of one start ~ 8 bytes x L x
    (p for the Jacobian + ~6 k per-atom temporaries) x 2 (forward values and tangents); a fit's data
    (x, y, mask) is 8 x L x (d + 2). Queue: `lanes` evaluations at once + every fit's data; lockstep:
    every start of every fit at once. At L = 10^6, p = 12, k = 3 one evaluation is ~0.5 GiB."""
    per_eval = 8 * length * (p + 6 * k) * 2
    per_data = 8 * length * (d + 2)
    budget = memory_gib * 2**30
    if schedule == "queue":  # lanes get at most half the budget, fits' data the rest
        width = max(1, min(lanes or _default_lanes(), int(budget / 2 // per_eval)))
        return max(1, int((budget - width * per_eval) // per_data)), width
    return max(1, int(budget // (restarts * per_eval + per_data))), lanes


@jax.jit
def _fit_keys(base, ns, rs):
    """key(n, r) = fold_in(fold_in(base, n), r), for a chunk at once."""
    return jax.vmap(lambda n, r: jax.random.fold_in(jax.random.fold_in(base, n), r))(ns, rs)


def _default_lanes() -> int:
    """Queue width: 2 lanes per CPU core. On the 2-core CPU (experiments/README.md) 4 lanes were best at
    n = 10^4, where the time goes (2 lanes were best at n <= 1000, by < 40%); 16 lanes lost everywhere."""
    return 2 * (os.cpu_count() or 1)


def _prepare(key, n, *, setting, model, length, init, restarts, noise, scale):
    """One fit's padded data, the MSE of the truth on it, its M starts and the exact-split reference start."""
    truth = setting.truth_params()
    k_data, k_init = jax.random.split(key)
    x, y, mask = draw_padded(k_data, setting, truth, n, length)
    objective_truth = least_squares_problem(setting.model, x, y, mask, gauge=False)[0].objective(ravel(truth)[0])
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
    return x, y, mask, objective_truth, starts, exact


def _solve_chunk(keys, ns, *, setting, model, solver, length, init, restarts, noise, scale, reference, ref_iter,
                 schedule, lanes):
    """All fits of a chunk: prepare, solve every (fit, start) job, keep each fit's best start."""
    prep = functools.partial(_prepare, setting=setting, model=model, length=length, init=init,
                             restarts=restarts, noise=noise, scale=scale)
    x, y, mask, objective_truth, starts, exact = jax.vmap(prep)(keys, ns)
    num_fits, p = exact.shape
    if schedule == "queue":
        jobs = starts.reshape(num_fits * restarts, p)
        job_fit = jnp.repeat(jnp.arange(num_fits), restarts)
        budget = jnp.full((num_fits * restarts,), solver.max_iter)
        if reference:
            jobs = jnp.concatenate([jobs, exact])
            job_fit = jnp.concatenate([job_fit, jnp.arange(num_fits)])
            budget = jnp.concatenate([budget, jnp.full((num_fits,), ref_iter)])
        num_lanes = lanes or _default_lanes()
        res = solve_queue(model, x, y, mask, jobs, job_fit, budget, lanes=num_lanes, config=solver.config)
        fits = jax.tree_util.tree_map(lambda a: a[: num_fits * restarts].reshape((num_fits, restarts) + a.shape[1:]),
                                      res)
        ref_objective = res.objective[num_fits * restarts:] if reference else None
        theta, objective, iterations, status = fits
    else:
        def one(x1, y1, m1, starts1):
            problem, _ = least_squares_problem(model, x1, y1, m1)
            return jax.vmap(lambda t: run_solver(solver, problem, t))(starts1)

        states = jax.vmap(one)(x, y, mask, starts)
        theta, objective, iterations, status = states.theta, states.objective, states.iteration, states.status
        if reference:
            ref_solver = levenberg_marquardt_solver(LMConfig(max_iter=ref_iter))
            ref_objective = jax.vmap(lambda x1, y1, m1, t: run_solver(
                ref_solver, least_squares_problem(model, x1, y1, m1)[0], t).objective)(x, y, mask, exact)
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
    return params, objective, objective_truth, objective_reference, iterations, status


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
    init_noise: float = 0.1,
    init_scale: float = 3.0,
    reference: bool = False,
    reference_iterations: int = 3000,
    min_rtol: float = 1e-6,
    min_atol: float = 1e-12,
    bucket_ratio: float = 1.25,
    chunk_size: int | None = None,
    memory_gib: float = 2.0,
    precision: str = "float64",
    schedule: str = "auto",
    lanes: int | None = None,
) -> CurveFit:
    """Fit every (n, replicate) pair of a rate study for `setting` with `k` atoms (default `setting.k_fit`).

    Returns a `CurveFit`; failed or non-finite fits are flagged in `status`/`converged`, never dropped.
    `restarts` defaults to 1 for k = k* and 4 for an over-fitted k (best of 4 near-truth splits).
    `schedule`: "queue" (LM only: lanes are refilled as fits finish, `queue.solve_queue`), "lockstep"
    (`vmap` of whole fits: every lane waits for the slowest), or "auto" (queue for LM, else lockstep).
    `lanes`: queue width (default: 2 per CPU core).
    `precision="float64"` (default; see experiments/README.md for why) or `"float32"`.
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
    # Over-fitted least squares has many local minima at moderate n (experiments/README.md): 4 starts by default.
    restarts = (1 if k_fit == setting.k_star else 4) if restarts is None else require_positive_int("restarts", restarts)
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

    order = np.argsort(sizes)
    results: dict[tuple[int, int], tuple] = {}
    work = int(np.sum(sizes)) * replicates
    padded_work = 0
    compile_seconds = 0.0
    chunk_sizes: dict[int, int] = {}
    t_start = time.perf_counter()
    with jax.enable_x64(precision == "float64"):
        base = jax.random.PRNGKey(int(seed))
        p = ravel(model.zeros())[0].size
        for bucket in bucket_sizes(sizes[order], bucket_ratio):
            length = int(bucket.max())
            todo = [(int(n), r) for n in bucket for r in range(replicates)]
            # Memory per lane ~ a few (L x p x k) arrays while forming the Jacobian, per restart.
            cap, width = _chunk_cap(length, p, model.num_atoms, setting.d, restarts, schedule, lanes, memory_gib)
            size = min(len(todo), cap if chunk_size is None else min(cap, chunk_size))
            size = -(-len(todo) // -(-len(todo) // size))  # equal chunks: the last one wastes least
            chunk_sizes[length] = size
            fn = jax.jit(functools.partial(
                _solve_chunk, setting=setting, model=model, solver=solver, length=length, init=init,
                restarts=restarts, noise=float(init_noise), scale=float(init_scale),
                reference=bool(reference), ref_iter=int(reference_iterations), schedule=schedule,
                lanes=width))
            compiled = None
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                padded = chunk + [chunk[-1]] * (size - len(chunk))
                ns = jnp.asarray([n for n, _ in padded])
                keys = _fit_keys(base, ns, jnp.asarray([r for _, r in padded]))
                if compiled is None:  # ahead-of-time, so compile time is measured, not guessed
                    t0 = time.perf_counter()
                    compiled = fn.lower(keys, ns).compile()
                    compile_seconds += time.perf_counter() - t0
                out = jax.block_until_ready(compiled(keys, ns))
                padded_work += length * size
                out = jax.tree_util.tree_map(np.asarray, out)
                for i, job in enumerate(chunk):
                    results[job] = jax.tree_util.tree_map(lambda a: a[i], out)
    seconds = time.perf_counter() - t_start
    return _assemble(sizes, replicates, results, dict(
        solver=solver.name, k=k_fit, init=init, schedule=schedule,
        restarts=restarts, reference=reference, precision=precision, seed=int(seed), replicates=replicates,
        work=work, padded_work=padded_work, waste_ratio=padded_work / work, seconds=seconds,
        compile_seconds=compile_seconds, min_rtol=min_rtol, min_atol=min_atol, chunk_sizes=chunk_sizes,
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
