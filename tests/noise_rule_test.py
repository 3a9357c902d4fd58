"""LM's noise-level stopping rule (`LMConfig.noise_window`, `noise_ftol`): it stops at the first iteration the
rule names on the trajectory of a run without it, changes nothing before, is a converged status, and is written
into sweep configs only when on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe.estimation import levenberg_marquardt as lm
from jaxmoe.estimation.problem import least_squares_problem, ravel
from jaxmoe.estimation.sampling import fit_data, fit_keys, fit_starts
from jaxmoe.estimation.solvers import get_solver
from jaxmoe.estimation.status import CONVERGED_NOISE, RUNNING, STATUS_NAMES, is_converged
from jaxmoe.sweeps.config import config_from_dict, preset_config

N, STEPS = 200, 150


@pytest.fixture(scope="module")
def problem_and_start():
    """An over-fitted softmax-ridge fit (float64): its problem and one near-truth start."""
    with jax.enable_x64(True):
        setting = jaxmoe.get_preset("softmax-ridge")
        model = setting.fitted_model(None)
        key = fit_keys(jax.random.PRNGKey(2), jnp.array([N]), jnp.array([0]))[0]
        x, y, mask, _ = fit_data(key, N, setting=setting, length=N)
        starts, _ = fit_starts(key, N, setting=setting, model=model, init="near_truth", restarts=2, noise=0.3,
                               scale=3.0)
        problem, _ = least_squares_problem(model, x, y, mask, block_size=0)
        return problem, starts[1]


def _trajectory(problem, theta0, config):
    """Objectives L_0..L_STEPS and statuses of `config`'s LM from `theta0`, a frozen state after it stops."""
    def step(state, _):
        new = lm.update(state, problem, config)
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(state.status == RUNNING, a, b), new, state)
        return new, (new.objective, new.status, new.iteration)

    state = lm.init(theta0, problem, config)
    _, (objective, status, iteration) = jax.lax.scan(step, state, None, length=STEPS)
    return (jnp.concatenate([state.objective[None], objective]), jnp.concatenate([state.status[None], status]),
            jnp.concatenate([jnp.zeros(1, iteration.dtype), iteration]))


@pytest.mark.parametrize("window, ftol", [(5, 1.0), (20, 10.0), (40, 5.0)])
def test_the_rule_stops_where_the_plain_trajectory_says(problem_and_start, window, ftol):
    """gtol = ftol = 0 so that only the rule (or a damping stall, which the plain run shows) stops: the rule's run equals the plain run up
    to the first t >= m with L_{t-m} - L_t < c L_t / n, and stops there with CONVERGED_NOISE."""
    problem, theta0 = problem_and_start
    base = lm.LMConfig(max_iter=10**6, gtol=0.0, ftol=0.0)
    with jax.enable_x64(True):
        plain, plain_status, _ = jax.jit(lambda t: _trajectory(problem, t, base))(theta0)
        ruled, status, iteration = jax.jit(lambda t: _trajectory(
            problem, t, base._replace(noise_window=window, noise_ftol=ftol)))(theta0)
        plain, plain_status, ruled, status, iteration = map(np.asarray, (plain, plain_status, ruled, status, iteration))
    t = np.arange(STEPS + 1)
    plain_stop = np.flatnonzero(plain_status != RUNNING)
    plain_stop = plain_stop[0] if plain_stop.size else STEPS + 1
    hits = np.flatnonzero((t >= window) & (np.roll(plain, window) - plain < ftol * plain / N))
    assert hits.size and hits[0] < plain_stop, "the test needs a trajectory on which the rule fires first"
    stop = hits[0]
    np.testing.assert_array_equal(ruled[:stop + 1], plain[:stop + 1])
    assert status[stop] == CONVERGED_NOISE and np.all(status[:stop] == RUNNING)
    assert iteration[-1] == stop  # frozen from there on


def test_the_rule_is_off_by_default_and_its_status_is_converged():
    assert lm.LMConfig().noise_window == 0
    assert STATUS_NAMES[CONVERGED_NOISE] == "converged_noise"
    assert bool(is_converged(jnp.asarray(CONVERGED_NOISE)))
    assert [bool(is_converged(jnp.asarray(s))) for s in range(5)] == [True, True, True, False, False]


def test_a_curve_with_the_rule_stops_sooner_at_the_same_minimum_as_its_budget():
    """A rule that fires stops a fit that would otherwise spend its budget, and the fits it stops keep the
    objective of the same start to within its own threshold times the remaining iterations' worth."""
    setting = jaxmoe.get_preset("softmax-ridge")
    study = dict(sample_sizes=[150], replicates=3, seed=5, restarts=2)
    plain = jaxmoe.fit_curve(setting, **study, solver=get_solver("lm", max_iter=200, gtol=0.0, ftol=0.0))
    ruled = jaxmoe.fit_curve(setting, **study, solver=get_solver("lm", max_iter=200, gtol=0.0, ftol=0.0,
                                                                  noise_window=10, noise_ftol=1.0))
    assert np.all(plain.status != CONVERGED_NOISE) and np.all(ruled.status == CONVERGED_NOISE)
    assert ruled.info["iterations_total"] < plain.info["iterations_total"]
    assert np.all(ruled.objective >= plain.objective)
    assert ruled.converged.all()


def test_the_rule_in_a_sweep_config_is_hashed_only_when_on_and_checked():
    exact = {"preset": "softmax-ridge", "model": {"k_fit": 2}}  # exact-fitted: the rule is off by default
    plain = config_from_dict(exact)
    assert "noise_window" not in plain.spec["solver"]["options"]
    off = config_from_dict({**exact, "solver": {"options": {"noise_window": 0, "noise_ftol": 1.0}}})
    assert off.hash == plain.hash  # configs written before the rule keep their hash
    on = config_from_dict({**exact, "solver": {"options": {"noise_window": 100}}})
    assert on.hash != plain.hash and on.spec["solver"]["options"]["noise_ftol"] == 1e-4
    assert on.fit_kwargs()["solver"].config.noise_window == 100
    with pytest.raises(jaxmoe.JaxMoEInputError, match=r"^solver.options.noise_window=-1: must be an integer >= 0"):
        config_from_dict({"preset": "softmax-ridge", "solver": {"options": {"noise_window": -1}}})
    with pytest.raises(jaxmoe.JaxMoEInputError, match=r"^solver.options.noise_ftol=-1.0: must be"):
        config_from_dict({"preset": "softmax-ridge", "solver": {"options": {"noise_window": 5, "noise_ftol": -1.0}}})


def test_the_reference_refinement_runs_without_the_rule():
    """With the rule on, the queue's reference refinement (the tight minimum fits are checked against) still runs
    without it: the same reference objectives as without the rule, where the reference beats the fits."""
    setting = jaxmoe.get_preset("softmax-ridge")
    # Random starts and a short budget: fits the reference from the split truth beats.
    study = dict(sample_sizes=[150, 400], replicates=2, seed=6, restarts=1, init="random", reference=True,
                 reference_iterations=400)
    plain = jaxmoe.fit_curve(setting, **study, solver=get_solver("lm", max_iter=40))
    ruled = jaxmoe.fit_curve(setting, **study, solver=get_solver("lm", max_iter=40, noise_window=5, noise_ftol=10.0))
    assert np.any(ruled.status == CONVERGED_NOISE)
    better = plain.objective_reference < np.minimum(plain.objective, ruled.objective)
    assert better.any()
    np.testing.assert_array_equal(ruled.objective_reference[better], plain.objective_reference[better])
