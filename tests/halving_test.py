"""Successive halving of the starts (`prune_at`, `prune_keep`): resumed queue states continue bit for bit, a
pruned chunk keeps the best continued start and counts every start's work, the no-op cases are the default
fits, and bad values are one line."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe.estimation.chunk import solve_chunk
from jaxmoe.estimation.queue import solve_queue
from jaxmoe.estimation.sampling import fit_data, fit_keys, fit_starts
from jaxmoe.estimation.solvers import get_solver
from jaxmoe.estimation.status import MAX_ITER
from jaxmoe.sweeps.config import config_from_dict, preset_config

N, LENGTH, BLOCK, M, MAX_ITER_T = 150, 1024, 512, 6, 120
STARTS = dict(init="near_truth", restarts=M, noise=0.3, scale=3.0, decay=0.0)


@pytest.fixture(scope="module")
def study():
    """Two over-fitted softmax-ridge fits: their data, M starts each and the model (float64)."""
    with jax.enable_x64(True):
        setting = jaxmoe.get_preset("softmax-ridge")
        model = setting.fitted_model(None)
        keys = fit_keys(jax.random.PRNGKey(7), jnp.array([N, N]), jnp.array([0, 1]))
        # One fit at a time (`lax.map`), as the chunk draws them: a `vmap` may differ by an ulp.
        x, y, mask, _ = jax.lax.map(lambda k: fit_data(k, N, setting=setting, length=LENGTH), keys)
        starts, _ = jax.lax.map(lambda k: fit_starts(k, N, setting=setting, model=model, **STARTS), keys)
        return setting, model, (x, y, mask), starts.reshape(2 * M, -1)


def _queue(study, budget, **kw):
    _, model, (x, y, mask), starts = study
    job_fit = jnp.repeat(jnp.arange(2), M)
    solver = get_solver("lm", max_iter=MAX_ITER_T)
    run = jax.jit(lambda s, r: solve_queue(model, x, y, mask, s, job_fit, jnp.full(2 * M, budget), lanes=2,
                                           solver=solver, block_size=BLOCK, resume=r, **kw))
    return run


@pytest.mark.parametrize("stop_at", [1, 9, 40])
def test_a_resumed_queue_equals_an_uninterrupted_one(study, stop_at):
    with jax.enable_x64(True):
        starts = study[3]
        whole = _queue(study, MAX_ITER_T)(starts, None)
        first = _queue(study, stop_at, keep_states=True)(starts, None)
        assert np.all(np.asarray(first.iterations) <= stop_at)
        rest = _queue(study, MAX_ITER_T)(first.states.theta, first.states)
    for name in ("theta", "objective", "iterations", "status"):
        np.testing.assert_array_equal(getattr(rest, name), getattr(whole, name), err_msg=name)


def test_a_pruned_chunk_keeps_the_best_continued_start_and_counts_all_work(study):
    """The chunk's fit is, per fit, the best final objective among the K starts lowest at iteration t (a start
    stopped before t ranks by its final objective); its work is every pruned start's iterations up to t plus the
    kept starts' whole runs: computed here from one uninterrupted and one stopped queue run."""
    setting, model, _, starts = study
    t, keep = 15, 2
    with jax.enable_x64(True):
        whole = _queue(study, MAX_ITER_T)(starts, None)
        at_t = _queue(study, t)(starts, None)
        chunk = jax.jit(functools.partial(
            solve_chunk, setting=setting, model=model, solver=get_solver("lm", max_iter=MAX_ITER_T), length=LENGTH,
            starts=STARTS, reference=False, ref_iter=1, schedule="queue", lanes=2, block_size=BLOCK,
            prune=(t, keep)))
        result, _ = chunk(jnp.asarray(7), jnp.array([N, N]), jnp.array([0, 1]))
        result = jax.tree_util.tree_map(np.asarray, result)  # read outside float64 mode below
    at_t_objective = np.asarray(at_t.objective).reshape(2, M)
    final = np.asarray(whole.objective).reshape(2, M)
    iterations = np.asarray(whole.iterations).reshape(2, M)
    for fit in range(2):
        kept = np.argsort(at_t_objective[fit], kind="stable")[:keep]
        best = kept[np.argmin(final[fit, kept])]
        assert result.objective[fit] == final[fit, best]
        assert result.iterations[fit] == iterations[fit, best]
        pruned_work = np.sum(np.minimum(iterations[fit], t)) - np.sum(np.minimum(iterations[fit, kept], t))
        assert result.fit_iterations[fit] == pruned_work + np.sum(iterations[fit, kept])
        assert result.objective[fit] >= final[fit].min()  # never below the best of all M run to the end
    assert np.any(np.asarray(at_t.status) == MAX_ITER)  # the test prunes starts that were still running


@pytest.mark.parametrize("prune", [dict(prune_at=0), dict(prune_at=5, prune_keep=4), dict(prune_at=300)])
def test_pruning_that_changes_nothing_gives_the_default_fits(prune):
    """prune_at = 0 (off), prune_keep >= restarts, prune_at >= max_iter: the default fits, bit for bit."""
    setting = jaxmoe.get_preset("softmax-ridge")
    study = dict(sample_sizes=[120], replicates=2, seed=1, restarts=4, solver=get_solver("lm", max_iter=60))
    default = jaxmoe.fit_curve(setting, **study)
    fit = jaxmoe.fit_curve(setting, **study, **prune)
    for name in ("objective", "iterations", "status"):
        np.testing.assert_array_equal(getattr(fit, name), getattr(default, name), err_msg=name)
    assert fit.info["iterations_total"] == default.info["iterations_total"]


def test_pruned_curve_fits_are_never_better_and_cost_less():
    setting = jaxmoe.get_preset("softmax-ridge")
    study = dict(sample_sizes=[120, 300], replicates=2, seed=4, restarts=8, solver=get_solver("lm", max_iter=80))
    default = jaxmoe.fit_curve(setting, **study)
    pruned = jaxmoe.fit_curve(setting, **study, prune_at=10, prune_keep=2)
    assert np.all(pruned.objective >= default.objective)
    assert pruned.info["iterations_total"] < default.info["iterations_total"]
    assert (pruned.info["prune_at"], pruned.info["prune_keep"]) == (10, 2)
    assert pruned.info["programs_compiled"] + pruned.info["programs_loaded"] == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(prune_at=-1), r"^prune_at=-1: must be an integer >= 0"),
    (dict(prune_at=2.5), r"^prune_at=2.5: must be an integer >= 0"),
    (dict(prune_keep=0), r"^prune_keep=0: "),
    (dict(prune_at=10, solver="lbfgs"), r"^prune_at=10: pruning starts needs the work queue"),
    (dict(prune_at=10, schedule="lockstep"), r"^prune_at=10: pruning starts needs the work queue"),
])
def test_bad_pruning_options_are_one_line(kwargs, match):
    with pytest.raises(jaxmoe.JaxMoEInputError, match=match):
        jaxmoe.fit_curve(jaxmoe.get_preset("softmax-ridge"), [120], 1, **kwargs)


def test_pruning_in_the_config_is_hashed_only_when_on_and_checked():
    plain = preset_config("softmax-ridge")
    assert "prune_at" not in plain.spec["solver"] and "prune_keep" not in plain.spec["solver"]
    off = config_from_dict({"preset": "softmax-ridge", "solver": {"prune_at": 0, "prune_keep": 4}})
    assert off.hash == plain.hash  # configs written before pruning existed keep their hash
    on = plain.replace(prune_at=100)
    assert on.hash != plain.hash and (on.fit_kwargs()["prune_at"], on.fit_kwargs()["prune_keep"]) == (100, 8)
    assert on.replace(prune_keep=4).hash != on.hash
    from jaxmoe.sweeps.report import estimator
    assert estimator(on.spec) == ("least squares: the best of 32 starts (near_truth, noise 0.3, the best 8 at "
                                  "iteration 100 continued)")
    for solver, match in [({"prune_at": -3}, r"^solver.prune_at=-3: must be an integer >= 0"),
                          ({"prune_at": 5, "prune_keep": 0}, r"^solver.prune_keep=0: must be an integer >= 1"),
                          ({"prune_at": 5, "name": "adam"}, r"^solver.prune_at=5: pruning starts needs the work queue")]:
        with pytest.raises(jaxmoe.JaxMoEInputError, match=match):
            config_from_dict({"preset": "softmax-ridge", "solver": solver})


def test_the_estimator_names_pruning_only_where_it_changes_the_fits():
    from jaxmoe.sweeps.report import estimator
    from jaxmoe.sweeps.table1 import variant_label
    plain = preset_config("softmax-ridge")
    for at, named in [(1000, False), (999, True), (0, False)]:  # max_iter 1000: pruning at 1000 changes nothing
        spec = plain.replace(prune_at=at).spec
        assert ("continued" in estimator(spec)) == named and ("continued" in variant_label(spec)) == named
