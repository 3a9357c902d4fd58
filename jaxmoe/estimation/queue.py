r"""A work queue of fits on a fixed number of `vmap` lanes, refilled as fits finish (any `Solver` with `fresh`).

Under plain `vmap`, a batch of fits runs until its slowest fit stops, stopped lanes idling (and over-fitted
fits need anywhere from 20 to 300 iterations). Here every iteration advances all B lanes by one solver step;
a lane whose fit has stopped writes its result and is re-loaded with the next job (a fresh state,
`Solver.fresh`: its next step is the first evaluation, so a reload costs nothing extra). Total steps ~ sum of
iterations / B. Each job is (fit, start, iteration budget); a fit's data are gathered by index each refill.
Levenberg-Marquardt (the default) is the solver with a fresh state; `solve_queue` takes any other that has one.

**Resuming.** With `keep_states=True` the queue also returns every job's final solver state, as it was when the
job stopped (a job stopped by its budget still `RUNNING`); passed back as `resume`, those states continue where
they stopped, their iteration counts going on (`job_max_iter` is then the total budget). A job run to
iteration t, kept, and resumed goes through the same updates as one run without the stop: the successive halving
of starts (`chunk.py`) relies on it (tests/halving_test.py checks it bit for bit).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxmoe.validation import require
from jaxmoe.estimation.problem import active_samples, default_block_size, dynamic_blocks, least_squares_problem
from jaxmoe.estimation.solvers import Solver, levenberg_marquardt_solver
from jaxmoe.estimation.status import MAX_ITER, RUNNING

__all__ = ["QueueResult", "solve_queue"]


class QueueResult(NamedTuple):
    theta: Float[Array, "J p"]
    objective: Float[Array, "J"]
    iterations: Int[Array, "J"]
    status: Int[Array, "J"]
    # Solver steps every lane executed (lanes x steps lane-steps in all, frozen and idle lanes included): the
    # work done, against sum(iterations) the work needed.
    steps: Int[Array, ""] = 0
    # Samples one lane evaluated, summed over steps: with run-time sample counts a step costs the largest
    # active length among the lanes (they run the block loop together); else the padded length L.
    lane_samples: Float[Array, ""] = 0.0
    # Every job's solver state when it stopped (leaves with leading axis J), with `keep_states=True`; else None.
    states: Any = None


def solve_queue(model, x: Float[Array, "F d L"], y: Float[Array, "F L"], mask: Float[Array, "F L"],
                starts: Float[Array, "J p"], job_fit: Int[Array, "J"], job_max_iter: Int[Array, "J"], lanes: int,
                solver: Solver | None = None, steps_per_refill: int = 8, block_size: int | None = None,
                resume: Any = None, keep_states: bool = False) -> QueueResult:
    """Run jobs j = 0..J-1 (start `starts[j]` on fit `job_fit[j]`'s data, at most `job_max_iter[j]` steps) with
    `solver` (any `Solver` with `fresh`; default LM); returns per-job final theta, objective, iterations, status
    and the number of steps run. Lanes are checked and refilled every `steps_per_refill` steps (a stopped lane
    is frozen meanwhile): the refill's gathers and scatters cost about as much as a step at small n, so they are
    amortised. `block_size`: samples per normal-equation block (None: `problem.default_block_size()`).
    Masks must be prefixes (1 for the first n samples, as `sampling.draw_padded` makes them): with L a whole
    number of blocks, each fit's normal equations then cost its own n, not L (`problem.active_samples`).
    `resume`: solver states (leading axis J, from an earlier `keep_states=True` run) to continue instead of
    fresh states at `starts` (module docstring); `keep_states`: return every job's final state in `states`."""
    solver = levenberg_marquardt_solver() if solver is None else solver
    require(solver.fresh is not None, "solver", solver.name,
            "has no fresh state (Solver.fresh): the work queue cannot re-load its lanes; use schedule='lockstep'")
    num_jobs, p = starts.shape
    # The width stays `lanes` even with fewer jobs (the extra lanes idle): a lane's arithmetic is compiled for
    # the batch shape, so a fit must not get another width from having few companions in its chunk.
    counts = jnp.sum(mask, axis=1)  # each fit's n (exact: a sum of 0/1 values)
    block_size = default_block_size() if block_size is None else int(block_size)
    length = x.shape[-1]
    dynamic = dynamic_blocks(length, block_size)
    lengths = jnp.round(counts).astype(jnp.int32)
    evaluated = (active_samples(lengths, block_size) if dynamic else jnp.full_like(lengths, length)).astype(x.dtype)

    def problem_of(fit, data=None):
        x1, y1, m1 = (x[fit], y[fit], mask[fit]) if data is None else data
        # (`active_length` is ignored where L is not a whole number of blocks: `problem.dynamic_blocks`.)
        return least_squares_problem(model, x1, y1, m1, block_size=block_size, num_samples=counts[fit],
                                     active_length=lengths[fit])[0]

    def fresh(job):
        job = jnp.minimum(job, num_jobs - 1)  # an idle lane holds a copy of the last job, never recorded
        if resume is not None:
            return jax.tree_util.tree_map(lambda a: a[job], resume)
        return solver.fresh(starts[job], problem_of(job_fit[job]))

    lane_job = jnp.arange(lanes)
    states = jax.vmap(fresh)(lane_job)  # the first `lanes` jobs
    out = _unfinished(num_jobs, p, starts.dtype)
    if keep_states:  # every job's row of the state, filled as it stops
        out = out._replace(states=jax.tree_util.tree_map(lambda a: jnp.zeros((num_jobs,) + a.shape[1:], a.dtype),
                                                         states))

    def step(carry):
        states, lane_job, next_job, out, steps, samples = carry
        active = lane_job < num_jobs
        job = jnp.minimum(lane_job, num_jobs - 1)
        budget = job_max_iter[job]
        fit = job_fit[job]
        data = (x[fit], y[fit], mask[fit])  # gathered once per refill period, not once per step

        def one_step(_, states):
            stepped = jax.vmap(lambda s, f, *d: solver.update(s, problem_of(f, d)))(states, fit, *data)
            stopped = (states.status != RUNNING) | (states.iteration >= budget)
            return _select(stopped, states, stepped)

        states = jax.lax.fori_loop(0, steps_per_refill, one_step, states)
        spent = states.iteration >= budget
        done = active & ((states.status != RUNNING) | spent)
        out = _record(out, states, done, job, num_jobs)
        new_job, reload = _assign(done, lane_job, next_job, num_jobs)
        states = _select(reload, jax.vmap(fresh)(new_job), states)
        samples = samples + steps_per_refill * jnp.max(evaluated[fit])
        return states, new_job, next_job + jnp.sum(done), out, steps + steps_per_refill, samples

    carry = (states, lane_job, jnp.asarray(min(lanes, num_jobs)), out, jnp.asarray(0, jnp.int32),
             jnp.zeros((), x.dtype))
    _, _, _, out, steps, samples = jax.lax.while_loop(lambda c: jnp.any(c[1] < num_jobs), step, carry)
    return out._replace(steps=steps, lane_samples=samples)


def _unfinished(num_jobs: int, p: int, dt) -> QueueResult:
    """Every job's row before it finishes (every job finishes before the queue returns)."""
    return QueueResult(jnp.zeros((num_jobs, p), dt), jnp.full((num_jobs,), jnp.nan, dt),
                       jnp.zeros((num_jobs,), jnp.int32), jnp.full((num_jobs,), MAX_ITER, jnp.int32))


def _select(lane_mask: Bool[Array, "B"], a, b):
    """Per lane, state `a` where `lane_mask` else state `b` (every leaf has the lane axis first)."""
    return jax.tree_util.tree_map(
        lambda u, v: jnp.where(lane_mask.reshape((-1,) + (1,) * (u.ndim - 1)), u, v), a, b)


def _record(out: QueueResult, states, done: Bool[Array, "B"], job: Int[Array, "B"], num_jobs: int) -> QueueResult:
    """Write the stopped lanes' results into their jobs' rows (a job stopped by its budget gets MAX_ITER)."""
    status = jnp.where(states.status == RUNNING, MAX_ITER, states.status)
    slot = jnp.where(done, job, num_jobs)  # out-of-range slots are dropped by the scatter
    return QueueResult(out.theta.at[slot].set(states.theta, mode="drop"),
                       out.objective.at[slot].set(states.objective, mode="drop"),
                       out.iterations.at[slot].set(states.iteration, mode="drop"),
                       out.status.at[slot].set(status, mode="drop"), out.steps, out.lane_samples,
                       None if out.states is None else jax.tree_util.tree_map(
                           lambda o, s: o.at[slot].set(s, mode="drop"), out.states, states))


def _assign(done: Bool[Array, "B"], lane_job: Int[Array, "B"], next_job: Int[Array, ""], num_jobs: int):
    """Each stopped lane takes the next job not yet started, in lane order (`num_jobs`: none left); returns the
    lanes' jobs and which lanes must be re-loaded with a fresh state."""
    rank = jnp.cumsum(done) - 1
    new_job = jnp.where(done, next_job + rank, lane_job)
    new_job = jnp.where(done & (new_job >= num_jobs), num_jobs, new_job)
    return new_job, done & (new_job < num_jobs)
