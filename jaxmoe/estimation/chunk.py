r"""One chunk of a rate study, on one device (under `shard_map`): draw the data, solve every job, keep the best.

A chunk holds F fits of one bucket (one padded length L) and M starts each, given by (seed, n, r) only: their
keys, data and starts are drawn inside the chunk's program, so a curve needs no other. Its jobs are the F x M
(fit, start) pairs, plus, with `reference=True`, one long refinement per fit started at the exact split of
the truth. Two schedules run them:

- **queue** (`queue.solve_queue`, any solver with a fresh state): the jobs share `lanes` vmap lanes, each
  refilled as its job stops; the reference jobs run with the fit's solver, with budget `ref_iter` (and
  without LM's noise-level rule, on a queue of their own, where the fit's solver has it on);
- **lockstep**: `vmap` over fits of `vmap` over starts of a whole-fit `run_solver`, every lane waiting for the
  slowest; the reference is a separate `vmap` of LM with `LMConfig(max_iter=ref_iter)` and the fit's gtol.

**Successive halving** (queue only; `prune` = (t, K), off by default): every start of a fit runs to iteration
t, then only the K with the lowest objective there continue, resumed from their solver states (the same
updates as a run that never stopped, `queue.py`), to the iteration limit; the other M - K are *pruned*. The fit
is then the best of the starts that ran to a stopping rule or the limit. Measured through the engine
(experiments/flat_landscapes.md, section (e)): the top 8 of 32 at iteration 300 end within 0.1 sigma^2 / n of
all 32 in 79% and 83% of over-fitted hierarchical-linear and hierarchical-ridge fits (budget 2000), at 36-47% of
the iterations.

Each fit keeps its start with the lowest finite objective. The reference objective is the better of the
refinement and the fit itself (both are local searches). The work is reported as every fit's iterations
(every start and the reference, summed) and the lane-steps the schedule executed.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxmoe.estimation.levenberg_marquardt import LMConfig
from jaxmoe.estimation.options import pruning_changes_fits
from jaxmoe.estimation.problem import least_squares_problem, ravel
from jaxmoe.estimation.queue import solve_queue
from jaxmoe.estimation.sampling import fit_data, fit_keys, fit_starts
from jaxmoe.estimation.solvers import levenberg_marquardt_solver, run_solver

__all__ = ["ChunkResult", "solve_chunk"]


class ChunkResult(NamedTuple):
    """Every fit of a chunk (leading axis F): the kept start's fit, and the work the fit took."""

    params: Any  # the model's parameter NamedTuple, leaves (F, ...)
    objective: Float[Array, "F"]
    objective_truth: Float[Array, "F"]
    objective_reference: Float[Array, "F"]  # NaN without a reference
    iterations: Int[Array, "F"]  # of the kept start
    status: Int[Array, "F"]  # of the kept start (`status.Status`)
    fit_iterations: Int[Array, "F"]  # of every start and the reference, summed


class _Jobs(NamedTuple):
    """Every (fit, start) job's outcome, (F, M); the reference's objective (F,) or None; the work."""

    theta: Float[Array, "F M p"]
    objective: Float[Array, "F M"]
    iterations: Int[Array, "F M"]
    status: Int[Array, "F M"]
    ref_objective: Float[Array, "F"] | None
    fit_iterations: Int[Array, "F"]
    lane_steps: Int[Array, ""]
    lane_samples: Float[Array, ""]  # samples evaluated, summed over lane-steps
    pruned: Bool[Array, "F M"] | None = None  # starts successive halving stopped early (None: no pruning)


def _queue_jobs(data, starts, exact, *, model, solver, restarts, reference, ref_iter, lanes, block_size,
                prune=(0, 0)) -> _Jobs:
    """The F x M jobs (and F reference jobs) on one work queue of `lanes` lanes; with `prune` = (t, K) active
    (`options.pruning_changes_fits`), successive halving: every start runs to iteration t, then only each fit's K best go on. The
    reference jobs share the queue, or, where the fit's solver stops by LM's noise-level rule, run on a queue
    of their own without it (the reference is the tight minimum the fits are checked against)."""
    x, y, mask = data
    num_fits, p = exact.shape
    fits = num_fits * restarts
    jobs = starts.reshape(fits, p)
    job_fit = jnp.repeat(jnp.arange(num_fits), restarts)
    pruning = pruning_changes_fits(*prune, restarts, solver.max_iter)
    budget = jnp.full((fits,), prune[0] if pruning else solver.max_iter)
    ref_solver = _reference_solver(solver)
    shared = reference and ref_solver is solver
    if shared:
        jobs = jnp.concatenate([jobs, exact])
        job_fit = jnp.concatenate([job_fit, jnp.arange(num_fits)])
        budget = jnp.concatenate([budget, jnp.full((num_fits,), ref_iter)])
    queue = functools.partial(solve_queue, model, x, y, mask, lanes=lanes, solver=solver, block_size=block_size)
    res = queue(jobs, job_fit, budget, keep_states=pruning)
    pruned = None
    if pruning:
        res, pruned = _continue_best(queue, res, num_fits, restarts, prune[1], solver.max_iter)
    if reference and not shared:
        ref = solve_queue(model, x, y, mask, exact, jnp.arange(num_fits), jnp.full((num_fits,), ref_iter),
                          lanes=lanes, solver=ref_solver, block_size=block_size)
        res = _merge(res, ref, lambda a, b: jnp.concatenate([a, b]))
    lane_steps, lane_samples = res.steps * lanes, res.lane_samples * lanes
    fit_iterations = jnp.sum(res.iterations[:fits].reshape(num_fits, restarts), axis=1)
    ref_objective = None
    if reference:
        fit_iterations = fit_iterations + res.iterations[fits:]
        ref_objective = res.objective[fits:]
    per_job = (res.theta, res.objective, res.iterations, res.status)
    theta, objective, iterations, status = jax.tree_util.tree_map(
        lambda a: a[:fits].reshape((num_fits, restarts) + a.shape[1:]), per_job)
    return _Jobs(theta, objective, iterations, status, ref_objective, fit_iterations, lane_steps, lane_samples,
                 pruned)


def _merge(res, more, rows):
    """Two queue runs as one: per-job rows combined by `rows(res's, more's)` (appended, or written over), the
    work summed (the states are not kept)."""
    fields = ("theta", "objective", "iterations", "status")
    return res._replace(**{f: rows(getattr(res, f), getattr(more, f)) for f in fields}, steps=res.steps + more.steps,
                        lane_samples=res.lane_samples + more.lane_samples, states=None)


def _reference_solver(solver):
    """The solver of the queue's reference refinement: the fit's own, except without LM's noise-level rule."""
    if getattr(solver.config, "noise_window", 0):
        return levenberg_marquardt_solver(solver.config._replace(noise_window=0))
    return solver


def _continue_best(queue, res, num_fits: int, restarts: int, keep: int, max_iter: int):
    """Phase two of successive halving: each fit's `keep` starts with the lowest objective at the pruning
    iteration (a start stopped earlier ranks by its final objective, a non-finite one last) resume from their
    states to `max_iter`; the others end there. Returns the jobs' outcomes (phase one's rows with the resumed
    starts written over theirs) and which (fit, start) pairs were pruned, (F, M)."""
    fits = num_fits * restarts
    objective = res.objective[:fits].reshape(num_fits, restarts)
    rank = jnp.argsort(jnp.where(jnp.isfinite(objective), objective, jnp.inf), axis=1, stable=True)
    chosen = (rank[:, :keep] + restarts * jnp.arange(num_fits)[:, None]).reshape(-1)  # job indices, (F K,)
    states = jax.tree_util.tree_map(lambda a: a[chosen], res.states)
    job_fit = chosen // restarts
    more = queue(states.theta, job_fit, jnp.full(chosen.shape, max_iter), resume=states)
    pruned = jnp.ones(fits, bool).at[chosen].set(False).reshape(num_fits, restarts)
    return _merge(res, more, lambda a, b: a.at[chosen].set(b)), pruned


def _lockstep_jobs(data, starts, exact, *, model, solver, reference, ref_iter, block_size) -> _Jobs:
    """`vmap` over fits of `vmap` over starts of whole fits; the reference as a `vmap` of long LM fits."""
    x, y, mask = data
    num_fits = exact.shape[0]

    def one(x1, y1, m1, starts1):
        problem, _ = least_squares_problem(model, x1, y1, m1, block_size=block_size)
        return jax.vmap(lambda t: run_solver(solver, problem, t))(starts1)

    states = jax.vmap(one)(x, y, mask, starts)
    iterations = states.iteration
    lane_steps = jnp.max(iterations) * iterations.size  # every lane runs until the slowest stops
    fit_iterations = jnp.sum(iterations, axis=1)
    ref_objective = None
    if reference:
        # The fit's gradient tolerance (noise-scaled by default), so the reference is as tight at every sigma.
        gtol = getattr(solver.config, "gtol", LMConfig().gtol)
        ref_solver = levenberg_marquardt_solver(LMConfig(max_iter=ref_iter, gtol=gtol))
        ref_states = jax.vmap(lambda x1, y1, m1, t: run_solver(
            ref_solver, least_squares_problem(model, x1, y1, m1, block_size=block_size)[0], t))(x, y, mask, exact)
        ref_objective = ref_states.objective
        lane_steps = lane_steps + jnp.max(ref_states.iteration) * num_fits
        fit_iterations = fit_iterations + ref_states.iteration
    return _Jobs(states.theta, states.objective, iterations, states.status, ref_objective, fit_iterations,
                 lane_steps, lane_steps * x.shape[-1])


def _keep_best(jobs: _Jobs, objective_truth, model) -> ChunkResult:
    """Each fit's start with the lowest finite objective, and the reference objective."""
    objective = jobs.objective
    # Pruned starts (not continued past the pruning iteration) are never the one kept: with LM, which never
    # increases the objective, a continued start ends at or below every pruned one anyway; this settles ties.
    finite = jnp.isfinite(objective) & (True if jobs.pruned is None else ~jobs.pruned)
    best = jnp.argmin(jnp.where(finite, objective, jnp.inf), axis=1)
    pick = lambda a: jnp.take_along_axis(a, best.reshape((-1,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]
    theta, objective, iterations, status = pick(jobs.theta), pick(objective), pick(jobs.iterations), pick(jobs.status)
    if jobs.ref_objective is not None:
        # The reference is the better of the long refinement and the fit itself (both are local searches).
        objective_reference = jnp.minimum(jnp.where(jnp.isfinite(jobs.ref_objective), jobs.ref_objective, jnp.inf),
                                          jnp.where(jnp.isfinite(objective), objective, jnp.inf))
    else:
        objective_reference = jnp.full_like(objective, jnp.nan)
    _, unravel = ravel(model.zeros())
    params = jax.vmap(lambda t: unravel(t))(theta)
    return ChunkResult(params, objective, objective_truth, objective_reference, iterations, status,
                       jobs.fit_iterations)


def solve_chunk(seed, ns, rs, *, setting, model, solver, length: int, starts: dict, reference: bool,
                ref_iter: int, schedule: str, lanes: int, block_size: int,
                prune: tuple[int, int] = (0, 0)) -> tuple[ChunkResult, Float[Array, "1 2"]]:
    """All fits of a chunk (of one device's share of it, under `shard_map`): fit i is (ns[i], rs[i]) of the
    study with `seed` (a scalar, the same on every device). Its key, data and starts are drawn here
    (`sampling.fit_keys`, `fit_data`, `fit_starts` with the `starts` options), so that one compiled program
    does everything a fit needs. Returns the fits and the work, as a (1, 2) array (one row per device):
    lane-steps run and samples the lanes evaluated (`queue.QueueResult.lane_samples`)."""
    keys = fit_keys(jax.random.PRNGKey(seed), ns, rs)
    # One fit at a time (`lax.map`, not `vmap`): XLA vectorises an (F, L) array's arithmetic by its shape, and
    # y drawn for F = 6 fits differed by an ulp from y drawn 2 by 2 (measured); a fit's data and starts must
    # not depend on how many fits share its chunk or device.
    data = functools.partial(fit_data, setting=setting, length=length)
    x, y, mask, objective_truth = jax.lax.map(lambda a: data(*a), (keys, ns))
    starts_of = functools.partial(fit_starts, setting=setting, model=model, **starts)
    start, exact = jax.lax.map(lambda a: starts_of(*a), (keys, ns))
    if schedule == "queue":
        jobs = _queue_jobs((x, y, mask), start, exact, model=model, solver=solver, restarts=starts["restarts"],
                           reference=reference, ref_iter=ref_iter, lanes=lanes, block_size=block_size,
                           prune=prune)
    else:
        jobs = _lockstep_jobs((x, y, mask), start, exact, model=model, solver=solver, reference=reference,
                              ref_iter=ref_iter, block_size=block_size)
    work = jnp.stack([jnp.asarray(jobs.lane_steps, x.dtype), jnp.asarray(jobs.lane_samples, x.dtype)])
    return _keep_best(jobs, objective_truth, model), work.reshape(1, 2)
