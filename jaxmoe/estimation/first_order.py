r"""First-order solvers from optax, projected onto the box $\Theta$: Adam and L-BFGS (with its zoom line search).

Both minimise $L(\theta) = \|r(\theta)\|^2$ (the MSE) and stop on the same rules as Levenberg-Marquardt:
projected gradient $\le$ `gtol`, or relative decrease $\le$ `ftol` between iterations, or `max_iter`.
The projection is applied after each optax update (projected L-BFGS keeps optax's curvature pairs, which is
exact while the box is inactive, the case the theory studies).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from jaxmoe.estimation.problem import LeastSquaresProblem, projected_gradient_norm
from jaxmoe.estimation.status import CONVERGED_FTOL, CONVERGED_GTOL, NONFINITE, RUNNING


class FirstOrderConfig(NamedTuple):
    """`method` is "adam" or "lbfgs"; `learning_rate` is Adam's (L-BFGS uses its line search)."""

    method: str = "lbfgs"
    max_iter: int = 500
    gtol: float = 1e-9
    ftol: float = 1e-12
    learning_rate: float = 1e-2
    memory_size: int = 10


class FirstOrderState(NamedTuple):
    theta: Float[Array, "p"]
    objective: Float[Array, ""]
    opt_state: Any
    iteration: Int[Array, ""]
    status: Int[Array, ""]


def _optimizer(config: FirstOrderConfig) -> optax.GradientTransformation:
    if config.method == "adam":
        return optax.adam(config.learning_rate)
    return optax.lbfgs(memory_size=config.memory_size)


def init(theta, problem: LeastSquaresProblem, config: FirstOrderConfig) -> FirstOrderState:
    theta = problem.project(theta)
    return FirstOrderState(theta, problem.objective(theta), _optimizer(config).init(theta),
                           jnp.asarray(0, jnp.int32), jnp.asarray(RUNNING, jnp.int32))


def update(state: FirstOrderState, problem: LeastSquaresProblem, config: FirstOrderConfig) -> FirstOrderState:
    opt = _optimizer(config)
    value, grad = jax.value_and_grad(problem.objective)(state.theta)
    if config.method == "lbfgs":
        updates, opt_state = opt.update(grad, state.opt_state, state.theta, value=value, grad=grad,
                                        value_fn=problem.objective)
    else:
        updates, opt_state = opt.update(grad, state.opt_state, state.theta)
    theta = problem.project(optax.apply_updates(state.theta, updates))
    objective = problem.objective(theta)
    pgrad = projected_gradient_norm(state.theta, grad, problem)
    rel = jnp.abs(value - objective) / jnp.maximum(value, jnp.finfo(theta.dtype).tiny)
    status = jnp.where(pgrad <= config.gtol, CONVERGED_GTOL, RUNNING)
    status = jnp.where((status == RUNNING) & (rel <= config.ftol) & (objective <= value), CONVERGED_FTOL, status)
    status = jnp.where(jnp.isfinite(objective) & jnp.all(jnp.isfinite(theta)), status, NONFINITE)
    # A converged-by-gradient test refers to the point before the update: keep that point.
    theta = jnp.where(status == CONVERGED_GTOL, state.theta, theta)
    objective = jnp.where(status == CONVERGED_GTOL, value, objective)
    return FirstOrderState(theta, objective, opt_state, state.iteration + 1, status.astype(jnp.int32))
