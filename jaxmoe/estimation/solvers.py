r"""The shared solver interface: `Solver(name, init, update, max_iter, config, fresh)` and a whole-fit `run_solver`.

Every solver is an init/update pair over a state with fields `theta`, `objective`, `iteration`, `status`
(status -1 while running, `status.Status`). `run_solver` loops `update` in a `lax.while_loop` until the status
is set or `max_iter` is reached; under `vmap` the loop runs until every lane has stopped, stopped lanes being
frozen.

`fresh` (optional) makes a state at theta that costs nothing: no evaluation, its next `update` does the first
one (and counts no iteration). The work queue (`queue.solve_queue`) needs it: it re-loads a lane with a new
job between two steps of the batch, and a reload that evaluated would cost the whole batch an extra step.
LM has one (`levenberg_marquardt.fresh_state`); a solver without it runs only in lockstep.

**Stopping rules relative to the noise.** At a least-squares minimum the objective (the MSE) is about
$\sigma^2$, and its gradient and its statistical resolution ($\sigma^2 / n$) scale with $\sigma^2$ too, so an
absolute gradient tolerance that is tight at $\sigma = 0.1$ is $10^4$ times looser, relative to the noise, at
$\sigma = 0.001$. `noise_scaled_gtol(sigma)` is the gradient tolerance that `fit_curve` and the sweep config
use by default: `DEFAULT_GTOL` (stated at `TOLERANCE_SIGMA` = 0.1) times $(\sigma / 0.1)^2$, exactly
`DEFAULT_GTOL` at $\sigma = 0.1$, so fits at the presets' noise are unchanged, and never below `GTOL_FLOOR`
(1e-14: float64's resolution of the gradient of an MSE of O(1) data; below it, as at $\sigma = 0$, a tolerance
is met by chance only). `ftol` is a relative decrease of
the objective and so already scales with $\sigma^2$. A tolerance a caller writes out is used as written.

**Over-fitted budgets.** An over-fitted fit (k > k*) crawls along the flat valleys of the PDE interactions for
hundreds of iterations more than an exact-fitted one, so a solver given by name gets `OVERFIT_OPTIONS` there:
for LM a budget of 1000 iterations (300 otherwise) and the noise-level stopping rule (window 100, c = 1e-4;
`levenberg_marquardt` docstring). Measured through the engine with 32 starts (experiments/flat_landscapes.md
(e), 24 fits per row, n 10^2..10^4, sigma 0.1): the share of fits that stop on a rule rises from 87.5% /
95.8% / 87.5% / 100% (softmax-linear, dts-linear-router, dts-nonlinear-router, softmax-ridge) to >= 95.8% in
every flat row, and from 25% / 4% to 87.5% / 33% in the hierarchical rows, at 1.1-1.5x the flat rows'
iterations of the 300 budget. On the reduced Table 1 (experiments/README.md, fit by fit against the 300 budget,
sigma 0.1 to 0.01) the flat rows' over-fitted fits that stop rose from 68.8-100% to 97.5-100% at 1.0-2.35x the
work, and no fit ended higher by more than 0.1 sigma^2 / n. Every start's objective can only fall with more
iterations, so the best of the same starts is never worse, except where the rule stops a start early.
`default_options(name, sigma, overfitted)` is the one place both `fit_curve` and the sweep config take them from.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxmoe.validation import JaxMoEInputError
from jaxmoe.estimation import first_order, levenberg_marquardt
from jaxmoe.estimation.problem import LeastSquaresProblem
from jaxmoe.estimation.status import MAX_ITER, RUNNING

__all__ = [
    "DEFAULT_GTOL",
    "GTOL_FLOOR",
    "OVERFIT_OPTIONS",
    "SOLVER_NAMES",
    "TOLERANCE_SIGMA",
    "Solver",
    "adam_solver",
    "default_options",
    "get_solver",
    "lbfgs_solver",
    "levenberg_marquardt_solver",
    "noise_scaled_gtol",
    "run_solver",
]

DEFAULT_GTOL = levenberg_marquardt.LMConfig().gtol  # every solver's default gradient tolerance, at sigma = 0.1
TOLERANCE_SIGMA = 0.1  # the noise level at which the default tolerances are stated
GTOL_FLOOR = 1e-14


def noise_scaled_gtol(sigma: float) -> float:
    """The default gradient tolerance for data with noise level `sigma`: DEFAULT_GTOL * (sigma / 0.1)^2
    (module docstring), at least GTOL_FLOOR; exactly DEFAULT_GTOL at sigma = 0.1."""
    return max(DEFAULT_GTOL * (float(sigma) / TOLERANCE_SIGMA) ** 2, GTOL_FLOOR)


# Options a solver given by name gets for an over-fitted k (module docstring, "Over-fitted budgets").
OVERFIT_OPTIONS = {"lm": {"max_iter": 1000, "noise_window": 100}}


def default_options(name: str, sigma: float, overfitted: bool) -> dict:
    """The options a solver given by `name` gets by default: the noise level's gradient tolerance
    (`noise_scaled_gtol(sigma)`) and, for an over-fitted k, `OVERFIT_OPTIONS[name]` (module docstring)."""
    return {"gtol": noise_scaled_gtol(sigma), **(OVERFIT_OPTIONS.get(name, {}) if overfitted else {})}


class Solver(NamedTuple):
    """A solver: `init(theta, problem) -> state`, `update(state, problem) -> state`, its iteration budget,
    its config (for the record), and optionally `fresh(theta, problem) -> state` (module docstring)."""

    name: str
    init: Callable[[jax.Array, LeastSquaresProblem], Any]
    update: Callable[[Any, LeastSquaresProblem], Any]
    max_iter: int
    config: Any = None
    fresh: Callable[[jax.Array, LeastSquaresProblem], Any] | None = None


def levenberg_marquardt_solver(config: levenberg_marquardt.LMConfig = levenberg_marquardt.LMConfig()) -> Solver:
    return Solver("lm", functools.partial(levenberg_marquardt.init, config=config),
                  functools.partial(levenberg_marquardt.update, config=config), config.max_iter, config,
                  functools.partial(levenberg_marquardt.fresh_state, config=config))


def lbfgs_solver(max_iter: int = 500, gtol: float = DEFAULT_GTOL, ftol: float = 1e-12, memory_size: int = 10) -> Solver:
    cfg = first_order.FirstOrderConfig("lbfgs", max_iter, gtol, ftol, memory_size=memory_size)
    return Solver("lbfgs", functools.partial(first_order.init, config=cfg),
                  functools.partial(first_order.update, config=cfg), max_iter, cfg)


def adam_solver(learning_rate: float = 1e-2, max_iter: int = 2000, gtol: float = DEFAULT_GTOL, ftol: float = 1e-12) -> Solver:
    cfg = first_order.FirstOrderConfig("adam", max_iter, gtol, ftol, learning_rate)
    return Solver("adam", functools.partial(first_order.init, config=cfg),
                  functools.partial(first_order.update, config=cfg), max_iter, cfg)


SOLVER_NAMES = ("lm", "lbfgs", "adam")


def get_solver(solver: str | Solver, **options) -> Solver:
    """Solver by name (`lm`, `lbfgs`, `adam`) with its options, or a `Solver` as is."""
    if isinstance(solver, Solver):
        return solver
    if solver == "lm":
        return levenberg_marquardt_solver(levenberg_marquardt.LMConfig(**options))
    if solver == "lbfgs":
        return lbfgs_solver(**options)
    if solver == "adam":
        return adam_solver(**options)
    raise JaxMoEInputError("solver", solver, f"must be one of {list(SOLVER_NAMES)} or a jaxmoe Solver")


def run_solver(solver: Solver, problem: LeastSquaresProblem, theta0: jax.Array, max_iter: int | None = None):
    """Run one fit to its stopping rule; returns the solver's final state (status never -1)."""
    limit = solver.max_iter if max_iter is None else max_iter
    state = solver.init(theta0, problem)
    state = jax.lax.while_loop(lambda s: (s.status == RUNNING) & (s.iteration < limit),
                               lambda s: solver.update(s, problem), state)
    return state._replace(status=jnp.where(state.status == RUNNING, MAX_ITER, state.status).astype(jnp.int32))
