r"""Projected Levenberg-Marquardt for box-constrained least squares, written for batching.

Each iteration solves $(J^\top J + \lambda D)\,\delta = -J^\top r$ ($D$ the running max of
$\mathrm{diag}(J^\top J)$, Moré's scaling), projects $\theta + \delta$ onto the box $\Theta$, and accepts the
step when the objective decreases; $\lambda$ follows Nielsen's rule (shrink by up to 3 on a good step,
grow by $\nu = 2, 4, 8, \dots$ on a rejected one).

Why written here rather than taken from optimistix: its Gauss-Newton family has open `vmap` issues
(optimistix #63, #144) and we need, under `vmap`, a loop body with no inner `while_loop` and a fixed cost:
one fused residual + Jacobian evaluation per iteration, at the candidate point only. The state keeps only
$J^\top J$ ($p \times p$) and $J^\top r$ ($p$) of the current point, so a rejected step costs no extra pass.

**Noise-level stopping rule** (`noise_window` = m > 0; off in `LMConfig()`, on for an over-fitted fit by
default, `solvers.default_options`): stop once the objective fell by less than `noise_ftol` $\cdot L_t / n$ over
the last m iterations, $L_{t-m} - L_t < c\,L_t / n$ ($L$ the MSE, about
$\sigma^2$ at the minimum, so $L / n$ is the objective's statistical resolution $\sigma^2 / n$; n the fit's
sample count, `LeastSquaresProblem.num_samples`). Over-fitted fits crawl along flat valleys for thousands of
iterations, lowering the objective by far less than $\sigma^2 / n$: on the recorded trajectories of
experiments/flat_landscapes.md (best of 4 starts), c = 1e-4, m = 100 stopped 96-100% of softmax-linear,
dts-linear-router and hierarchical-ridge fits within 1000 iterations and changed no accuracy fraction; through
the engine with 32 starts, section (e) there. Status `CONVERGED_NOISE`.
The state then keeps the last m objectives (a ring buffer, `history`); off, it keeps none.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxmoe.estimation.problem import LeastSquaresProblem, projected_gradient_norm
from jaxmoe.estimation.status import (CONVERGED_FTOL, CONVERGED_GTOL, CONVERGED_NOISE, CONVERGED_STALL, NONFINITE,
                                      RUNNING)


class LMConfig(NamedTuple):
    """Stopping rules and damping of `levenberg_marquardt`.

    - `gtol`: stop when $\\|\\theta - P_\\Theta(\\theta - \\nabla L)\\|_\\infty \\le$ gtol ($L = \\|r\\|^2$, the MSE);
    - `ftol`: stop when an accepted step decreases $L$ by a relative amount $\\le$ ftol;
    - `max_iter`: iteration budget (one residual + Jacobian evaluation each).
    """

    max_iter: int = 300
    gtol: float = 1e-9
    ftol: float = 1e-12
    init_damping: float = 1e-3
    max_damping: float = 1e12
    # "marquardt": D = diag(J^T J) at the current point; "more": running max of it (more robust far from the
    # minimum, but it over-damps directions whose curvature vanishes, as over-fitted atoms' do).
    scaling: str = "more"
    # "gauss_newton": curvature J^T J; "exact": the full Hessian J^T J + sum_j r_j d2r_j. Over-fitted atoms
    # sit in valleys whose curvature comes from the noise-sized residual term, which Gauss-Newton drops.
    hessian: str = "gauss_newton"
    # The noise-level stopping rule (module docstring): window m in iterations (0: off) and the fraction c of
    # the objective's resolution L / n. Off here; `solvers.default_options` turns it on (m = 100) for an
    # over-fitted fit given by name. A sweep config writes them only when on.
    noise_window: int = 0
    noise_ftol: float = 1e-4


LM_OPTION_NAMES = LMConfig._fields  # the options `get_solver("lm", **options)` takes


class LMState(NamedTuple):
    theta: Float[Array, "p"]
    objective: Float[Array, ""]
    gram: Float[Array, "p p"]  # half the Hessian (J^T J for Gauss-Newton) at theta
    grad: Float[Array, "p"]  # J^T r at theta: half the gradient of the objective
    scale: Float[Array, "p"]  # Moré's running max of diag(J^T J)
    damping: Float[Array, ""]
    nu: Float[Array, ""]
    iteration: Int[Array, ""]
    status: Int[Array, ""]
    # A fresh state holds only its start theta: the next `update` evaluates there (zero step) instead of
    # stepping. This lets a lane of a batched work queue be re-loaded with a new fit at no extra cost.
    fresh: Bool[Array, ""] = False
    # The objectives after the last m iterations, slot t mod m holding L_t (the noise-level rule; None: off).
    history: Float[Array, "m"] | None = None


def linearise(problem: LeastSquaresProblem, theta, config: LMConfig):
    """Objective ||r||^2, half its gradient J^T r, and half its (Gauss-Newton or exact) Hessian."""
    if config.hessian == "exact":
        half = lambda t: 0.5 * problem.objective(t)
        value, grad = jax.value_and_grad(half)(theta)
        return 2.0 * value, grad, jax.jacfwd(jax.grad(half))(theta)
    return problem.normal_equations(theta)


def init(theta: Float[Array, "p"], problem: LeastSquaresProblem, config: LMConfig = LMConfig()) -> LMState:
    theta = problem.project(theta)
    objective, grad, gram = linearise(problem, theta, config)
    dt = theta.dtype
    history = _empty_history(config, dt)
    history = None if history is None else history.at[0].set(objective)
    return LMState(theta, objective, gram, grad, jnp.abs(jnp.diag(gram)), jnp.asarray(config.init_damping, dt),
                   jnp.asarray(2.0, dt), jnp.asarray(0, jnp.int32), jnp.asarray(RUNNING, jnp.int32),
                   jnp.asarray(False), history)


def _empty_history(config: LMConfig, dt):
    """The noise-level rule's ring buffer before any iteration (every slot +inf: no decrease is known)."""
    return jnp.full((config.noise_window,), jnp.inf, dt) if config.noise_window > 0 else None


def fresh_state(theta: Float[Array, "p"], problem: LeastSquaresProblem, config: LMConfig = LMConfig()) -> LMState:
    """A state at `theta` that costs nothing to make: the next `update` does the first evaluation."""
    p, dt = theta.shape[0], theta.dtype
    return LMState(problem.project(theta), jnp.asarray(jnp.inf, dt), jnp.zeros((p, p), dt), jnp.zeros(p, dt),
                   jnp.zeros(p, dt), jnp.asarray(config.init_damping, dt), jnp.asarray(2.0, dt),
                   jnp.asarray(0, jnp.int32), jnp.asarray(RUNNING, jnp.int32), jnp.asarray(True),
                   _empty_history(config, dt))


def update(state: LMState, problem: LeastSquaresProblem, config: LMConfig = LMConfig()) -> LMState:
    """One LM iteration: propose, evaluate once at the candidate, accept or reject, check the stopping rules."""
    p = state.theta.shape[0]
    # Active set: a coordinate on a face of the box whose gradient pushes outward is held fixed for this step
    # (clipping an unconstrained step instead wastes iterations on rejected steps at the box's faces).
    eps = 1e-12 * (problem.upper - problem.lower)
    at_lower = (state.theta <= problem.lower + eps) & (state.grad > 0)
    at_upper = (state.theta >= problem.upper - eps) & (state.grad < 0)
    free = problem.free & ~at_lower & ~at_upper
    scale = jnp.maximum(state.scale, jnp.finfo(state.theta.dtype).tiny ** 0.5)
    # Pinned coordinates (lower == upper) get a zero step: identity rows/columns, zero gradient.
    gram = jnp.where(free[:, None] & free[None, :], state.gram, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    a = gram + state.damping * jnp.diag(scale)
    # Cholesky is enough: a is symmetric positive definite for damping > 0.
    chol = jax.scipy.linalg.cho_factor(a + jnp.finfo(a.dtype).eps * jnp.trace(a) / p * jnp.eye(p, dtype=a.dtype))
    delta = jax.scipy.linalg.cho_solve(chol, -jnp.where(free, state.grad, 0.0))
    delta = jnp.where(state.fresh, 0.0, delta)
    candidate = problem.project(state.theta + delta)
    step = candidate - state.theta
    f_new, grad_new, gram_new = linearise(problem, candidate, config)
    predicted = -(2.0 * jnp.dot(step, state.grad) + step @ state.gram @ step)
    actual = state.objective - f_new
    rho = actual / jnp.where(predicted > 0, predicted, jnp.inf)
    accept = jnp.isfinite(f_new) & (actual > 0)

    theta = jnp.where(accept, candidate, state.theta)
    objective = jnp.where(accept, f_new, state.objective)
    gram = jnp.where(accept, gram_new, state.gram)
    grad = jnp.where(accept, grad_new, state.grad)
    if config.scaling == "more":
        new_scale = jnp.where(accept, jnp.maximum(state.scale, jnp.abs(jnp.diag(gram_new))), state.scale)
    else:
        new_scale = jnp.where(accept, jnp.abs(jnp.diag(gram_new)), state.scale)
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.clip(rho, 0.0, 1.0) - 1.0) ** 3)
    damping = jnp.where(accept, state.damping * shrink, state.damping * state.nu)
    nu = jnp.where(accept, 2.0, state.nu * 2.0)
    damping = jnp.where(state.fresh, state.damping, damping)
    nu = jnp.where(state.fresh, state.nu, nu)

    pgrad = projected_gradient_norm(theta, 2.0 * grad, problem)
    rel_decrease = actual / jnp.maximum(state.objective, jnp.finfo(theta.dtype).tiny)
    status = jnp.where(pgrad <= config.gtol, CONVERGED_GTOL, RUNNING)
    status = jnp.where((status == RUNNING) & accept & ~state.fresh & (rel_decrease <= config.ftol), CONVERGED_FTOL, status)
    status = jnp.where((status == RUNNING) & (damping >= config.max_damping), CONVERGED_STALL, status)
    iteration = state.iteration + jnp.where(state.fresh, 0, 1).astype(jnp.int32)
    history = state.history
    if config.noise_window > 0:
        status, history = _noise_rule(status, history, objective, iteration, problem, config)
    status = jnp.where(jnp.isfinite(objective) & jnp.all(jnp.isfinite(theta)), status, NONFINITE)
    return LMState(theta, objective, gram, grad, new_scale, jnp.minimum(damping, config.max_damping), nu,
                   iteration, status.astype(jnp.int32), jnp.asarray(False), history)


def _noise_rule(status, history, objective, iteration, problem: LeastSquaresProblem, config: LMConfig):
    """`CONVERGED_NOISE` once L_{t-m} - L_t < c L_t / n (module docstring); the buffer with L_t in slot t mod m
    (it held L_{t-m} there, every iteration writing its slot, rejected steps included)."""
    m = config.noise_window
    slot = iteration % m
    previous = history[slot]  # L_{t-m}; +inf until m iterations have run
    # A problem that does not know its n (built by hand) gets n = 1: a rule on the relative decrease alone.
    n = 1.0 if problem.num_samples is None else problem.num_samples
    stalled = (iteration >= m) & (previous - objective < config.noise_ftol * objective / n)
    return jnp.where((status == RUNNING) & stalled, CONVERGED_NOISE, status), history.at[slot].set(objective)
