r"""A work queue of Levenberg-Marquardt fits on a fixed number of `vmap` lanes, refilled as fits finish.

Under plain `vmap`, a batch of fits runs until its slowest fit stops, stopped lanes idling (and over-fitted
fits need anywhere from 20 to 300 iterations). Here every iteration advances all B lanes by one LM step;
a lane whose fit has stopped writes its result and is re-loaded with the next job (a fresh state: its next
step is the first evaluation, so a reload costs nothing extra). Total steps ~ sum of iterations / B.
Each job is (fit, start, iteration budget); a fit's data are gathered by index each step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxmoe.estimation import levenberg_marquardt as lm
from jaxmoe.estimation.problem import MAX_ITER, RUNNING, least_squares_problem


class QueueResult(NamedTuple):
    theta: Float[Array, "J p"]
    objective: Float[Array, "J"]
    iterations: Int[Array, "J"]
    status: Int[Array, "J"]
    # LM steps every lane executed (lanes x steps lane-steps in all, frozen and idle lanes included): the
    # work done, against sum(iterations) the work needed.
    steps: Int[Array, ""] = 0


def solve_queue(model, x, y, mask, starts, job_fit, job_max_iter, lanes: int,
                config: lm.LMConfig = lm.LMConfig(), steps_per_refill: int = 8,
                block_size: int | None = None) -> QueueResult:
    """Run jobs j = 0..J-1 (start `starts[j]` on fit `job_fit[j]`'s data, at most `job_max_iter[j]` steps).

    `x: (F, d, L)`, `y, mask: (F, L)`; returns per-job final theta, objective, iterations and status, and the
    number of steps run.
    Lanes are checked and refilled every `steps_per_refill` LM steps (a stopped lane is frozen meanwhile):
    the refill's gathers and scatters cost about as much as a step at small n, so they are amortised.
    `block_size`: samples per block of the normal equations (None: `problem.default_block_size()`).
    """
    num_jobs, p = starts.shape
    lanes = min(lanes, num_jobs)
    counts = jnp.sum(mask, axis=1)  # each fit's n (exact: a sum of 0/1 values)

    def problem_of(fit, data=None):
        x1, y1, m1 = (x[fit], y[fit], mask[fit]) if data is None else data
        return least_squares_problem(model, x1, y1, m1, block_size=block_size, num_samples=counts[fit])[0]

    def fresh(job):
        return lm.fresh_state(starts[job], problem_of(job_fit[job]), config)

    lane_job = jnp.arange(lanes)
    states = jax.vmap(fresh)(lane_job)
    dt = starts.dtype
    out = QueueResult(jnp.zeros((num_jobs, p), dt), jnp.full((num_jobs,), jnp.nan, dt),
                      jnp.zeros((num_jobs,), jnp.int32), jnp.full((num_jobs,), MAX_ITER, jnp.int32))

    def step(carry):
        states, lane_job, next_job, out, steps = carry
        active = lane_job < num_jobs
        job = jnp.minimum(lane_job, num_jobs - 1)
        budget = job_max_iter[job]
        fit = job_fit[job]
        data = (x[fit], y[fit], mask[fit])  # gathered once per refill period, not once per step

        def one_step(_, states):
            stepped = jax.vmap(lambda s, f, *d: lm.update(s, problem_of(f, d), config))(states, fit, *data)
            stopped = (states.status != RUNNING) | (states.iteration >= budget)
            return jax.tree_util.tree_map(
                lambda old, new: jnp.where(stopped.reshape((-1,) + (1,) * (old.ndim - 1)), old, new), states, stepped)

        states = jax.lax.fori_loop(0, steps_per_refill, one_step, states)
        spent = states.iteration >= budget
        done = active & ((states.status != RUNNING) | spent)
        status = jnp.where(states.status == RUNNING, MAX_ITER, states.status)
        slot = jnp.where(done, job, num_jobs)  # out-of-range slots are dropped by the scatter
        out = QueueResult(out.theta.at[slot].set(states.theta, mode="drop"),
                          out.objective.at[slot].set(states.objective, mode="drop"),
                          out.iterations.at[slot].set(states.iteration, mode="drop"),
                          out.status.at[slot].set(status, mode="drop"), out.steps)
        rank = jnp.cumsum(done) - 1
        new_job = jnp.where(done, next_job + rank, lane_job)
        new_job = jnp.where(done & (new_job >= num_jobs), num_jobs, new_job)
        reload = done & (new_job < num_jobs)
        fresh_states = jax.vmap(fresh)(jnp.minimum(new_job, num_jobs - 1))
        states = jax.tree_util.tree_map(
            lambda f, s: jnp.where(reload.reshape((-1,) + (1,) * (s.ndim - 1)), f, s), fresh_states, states)
        return states, new_job, next_job + jnp.sum(done), out, steps + steps_per_refill

    carry = (states, lane_job, jnp.asarray(lanes), out, jnp.asarray(0, jnp.int32))
    _, _, _, out, steps = jax.lax.while_loop(lambda c: jnp.any(c[1] < num_jobs), step, carry)
    return out._replace(steps=steps)
