"""FitOptions, the plan, typed results and statuses: fit_curve as plan -> build -> run, with the same fits."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

import jaxmoe
from jaxmoe.estimation import levenberg_marquardt as lm
from jaxmoe.estimation import problem, status

INFO_KEYS = ["solver", "k", "init", "schedule", "restarts", "init_noise", "init_noise_decay", "prune_at", "prune_keep", "reference",
             "precision", "seed", "replicates", "work", "padded_work", "waste_ratio", "seconds", "compile_seconds",
             "compile_total_seconds", "min_rtol", "min_atol", "chunk_sizes", "devices", "buckets",
             "iterations_total", "sample_iterations", "executed_sample_iterations", "work_ratio",
             "programs_compiled", "programs_loaded"]
STUDY = dict(sample_sizes=[120, 150], replicates=2, seed=3, k=2)  # k = k*: one start by default, one bucket


@pytest.fixture(scope="module")
def ridge():
    return jaxmoe.get_preset("softmax-ridge")


@pytest.fixture(scope="module")
def default_fit(ridge):
    return jaxmoe.fit_curve(ridge, **STUDY)


def _assert_same_fits(a, b):
    for name in ("objective", "objective_truth", "objective_reference", "iterations", "status", "converged"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for leaf_a, leaf_b in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(leaf_a, leaf_b)


def test_defaults_are_fit_curves(ridge, default_fit):
    """FitOptions' per-k defaults are what fit_curve uses: 1 start (noise 0.1) at k = k*, 32 (0.3) over-fitted."""
    assert jaxmoe.default_starts(False) == (1, 0.1) and jaxmoe.default_starts(True) == (32, 0.3)
    exact = jaxmoe.FitOptions(k=2).validated(ridge)
    over = jaxmoe.FitOptions().validated(ridge)  # k_fit = k* + 1
    assert (exact.k, exact.restarts, exact.init_noise) == (2, 1, 0.1)
    assert (over.k, over.restarts, over.init_noise) == (3, 32, 0.3)
    assert over.schedule == "queue" and isinstance(over.solver, jaxmoe.Solver) and over.solver.name == "lm"
    assert jaxmoe.FitOptions(solver="lbfgs").validated(ridge).schedule == "lockstep"  # no fresh state
    assert over.devices == tuple(jax.local_devices()) and over.lanes == jaxmoe.default_lanes(len(over.devices),
                                                                                              over.devices[0].platform)
    info = default_fit.info
    assert (info["k"], info["restarts"], info["init_noise"], info["schedule"]) == (2, 1, 0.1, "queue")


def test_defaults_dict_is_plain_and_complete():
    defaults = jaxmoe.FitOptions.defaults_dict()
    assert list(defaults) == [f.name for f in dataclasses.fields(jaxmoe.FitOptions)]
    assert json.loads(json.dumps(defaults)) == defaults  # plain JSON-able values
    assert jaxmoe.FitOptions(**defaults) == jaxmoe.FitOptions()
    assert defaults["solver"] == "lm" and defaults["restarts"] is None and defaults["block_size"] is None
    over = jaxmoe.FitOptions.defaults_dict(overfitted=True)
    assert (over["restarts"], over["init_noise"]) == (32, 0.3)


def test_options_equal_keywords(ridge, default_fit):
    """options=FitOptions(...) and the same keywords are one thing; keywords override options."""
    by_options = jaxmoe.fit_curve(ridge, **STUDY, options=jaxmoe.FitOptions(restarts=2))
    by_keywords = jaxmoe.fit_curve(ridge, **STUDY, restarts=2)
    _assert_same_fits(by_options, by_keywords)
    assert by_options.info["restarts"] == by_keywords.info["restarts"] == 2
    overridden = jaxmoe.fit_curve(ridge, **STUDY, options=jaxmoe.FitOptions(restarts=2), restarts=1)
    _assert_same_fits(overridden, default_fit)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(restarts="2"), jaxmoe.JaxMoEInputError, "restarts='2': must be an integer >= 1"),
        (dict(block_size=-1), jaxmoe.JaxMoEInputError, "block_size=-1"),
        (dict(block_size=True), jaxmoe.JaxMoEInputError, "block_size=True"),
        (dict(reference="yes"), jaxmoe.JaxMoEInputError, "reference='yes'"),
        (dict(min_rtol=-1.0), jaxmoe.JaxMoEInputError, "min_rtol=-1.0"),
        (dict(init_scale=0.0), jaxmoe.JaxMoEInputError, "init_scale=0.0"),
        (dict(k="3"), jaxmoe.JaxMoEInputError, "k='3'"),
        (dict(solver="newton"), jaxmoe.JaxMoEInputError, "solver='newton'"),
        (dict(devices=["cpu"]), jaxmoe.JaxMoEInputError, "devices="),
        (dict(bogus=1), TypeError, "bogus"),  # a dataclass: unknown fields are a TypeError when built directly
    ],
)
def test_bad_options_are_one_line(kwargs, error, match):
    with pytest.raises(error, match=match) as caught:
        jaxmoe.FitOptions(**kwargs)
    assert "\n" not in str(caught.value)


def test_replace_checks_names_and_values():
    options = jaxmoe.FitOptions(restarts=4)
    assert options.replace(lanes=2) == jaxmoe.FitOptions(restarts=4, lanes=2)
    with pytest.raises(jaxmoe.JaxMoEInputError, match="bogus=1: is not a fit_curve option"):
        options.replace(bogus=1)
    with pytest.raises(jaxmoe.JaxMoEInputError, match="lanes=0"):
        options.replace(lanes=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.restarts = 2


def test_status_enum_in_one_place():
    assert [(s.name, int(s)) for s in jaxmoe.Status] == [
        ("RUNNING", -1), ("CONVERGED_GTOL", 0), ("CONVERGED_FTOL", 1), ("CONVERGED_STALL", 2), ("MAX_ITER", 3),
        ("NONFINITE", 4), ("CONVERGED_NOISE", 5)]
    assert jaxmoe.STATUS_NAMES == {0: "converged_gtol", 1: "converged_ftol", 2: "converged_stall", 3: "max_iter",
                                   4: "nonfinite", 5: "converged_noise"}
    for name in ("CONVERGED_GTOL", "CONVERGED_FTOL", "CONVERGED_STALL", "MAX_ITER", "NONFINITE", "RUNNING"):
        value = getattr(problem, name)  # the old import path keeps working, as plain ints
        assert type(value) is int and value == jaxmoe.Status[name] == getattr(status, name)
    assert problem.STATUS_NAMES is jaxmoe.STATUS_NAMES and problem.is_converged is jaxmoe.is_converged
    np.testing.assert_array_equal(jaxmoe.is_converged(np.arange(-1, 5)), [False, True, True, True, False, False])


def test_curve_info_is_typed_and_a_mapping(default_fit):
    info = default_fit.info
    assert isinstance(info, jaxmoe.CurveInfo)
    assert list(info) == list(info.keys()) == INFO_KEYS and len(info) == len(INFO_KEYS)
    assert info.k == info["k"] == 2 and info.get("reference") is False and info.get("missing", 7) == 7
    assert "waste_ratio" in info and "missing" not in info
    assert dict(info.items()) == dict(info) and isinstance(dict(info)["buckets"], list)
    assert info.chunk_sizes == {1024: 4} and info.buckets[0]["length"] == 1024  # two 512-sample blocks
    assert info.programs_compiled + info.programs_loaded == 1
    with pytest.raises(KeyError):
        info["missing"]
    assert default_fit.summary()["waste_ratio"] == info.waste_ratio


def test_plan_is_decided_before_any_work(ridge):
    # CPU default (the queue, 512-sample blocks): sample counts are run-time values, one bucket for all sizes,
    # padded to whole blocks (at least two).
    plan = jaxmoe.plan_curve(ridge, [1000, 100, 110], 3, seed=1, options=jaxmoe.FitOptions(chunk_size=4))
    assert [b.length for b in plan.buckets] == [1024]
    assert plan.sizes.tolist() == [1000, 100, 110] and plan.jobs[0] == (100, 0) and len(plan.jobs) == 9
    assert plan.buckets[0].chunk_size == 3 and plan.buckets[0].chunks == 3  # 9 fits, <= 4: three equal chunks
    assert plan.options.restarts == 32 and plan.num_params == 12
    longer = jaxmoe.plan_curve(ridge, [100], 1, options=jaxmoe.FitOptions(padded_length=3000))
    assert [b.length for b in longer.buckets] == [3072]
    # One block (as on an accelerator): sizes bucketed by bucket_ratio, each bucket its own shape, largest first.
    plan = jaxmoe.plan_curve(ridge, [1000, 100, 110], 3, seed=1,
                             options=jaxmoe.FitOptions(chunk_size=4, block_size=0, padded_length=5000))
    assert [b.length for b in plan.buckets] == [1000, 110]  # padded_length is ignored there (it would cost work)
    small = plan.buckets[1]
    assert small.jobs == tuple((n, r) for n in (100, 110) for r in range(3))
    assert small.chunk_size == 3 and small.chunks == 2  # 6 fits in chunks of <= 4: two equal chunks
    # An explicit ratio buckets run-time sizes too (each bucket padded to whole blocks).
    plan = jaxmoe.plan_curve(ridge, [1000, 100], 1, options=jaxmoe.FitOptions(bucket_ratio=1.25))
    assert [b.length for b in plan.buckets] == [1024, 1024]
    with pytest.raises(jaxmoe.JaxMoEInputError, match="padded_length=50: must be >= the largest sample size"):
        jaxmoe.plan_curve(ridge, [100], 1, options=jaxmoe.FitOptions(padded_length=50))


def test_queue_runs_any_solver_with_a_fresh_state(ridge):
    """The queue is not LM's: a Solver with another name (and config) that has `fresh` runs on it, with the same
    fits as lockstep; without `fresh` the queue is refused in one line."""
    cfg = lm.LMConfig(scaling="marquardt", max_iter=200)
    custom = jaxmoe.Solver("lm-marquardt", functools.partial(lm.init, config=cfg),
                           functools.partial(lm.update, config=cfg), cfg.max_iter, cfg,
                           functools.partial(lm.fresh_state, config=cfg))
    kwargs = dict(sample_sizes=[200], replicates=2, seed=7, k=2, restarts=2, solver=custom)
    queue = jaxmoe.fit_curve(ridge, **kwargs, lanes=2)
    lockstep = jaxmoe.fit_curve(ridge, **kwargs, schedule="lockstep")
    assert queue.info["schedule"] == "queue" and queue.info["solver"] == "lm-marquardt"
    np.testing.assert_array_equal(queue.status, lockstep.status)
    np.testing.assert_array_equal(queue.iterations, lockstep.iterations)
    np.testing.assert_allclose(queue.objective, lockstep.objective, rtol=1e-10)

    no_fresh = custom._replace(name="no-fresh", fresh=None)
    assert jaxmoe.FitOptions(solver=no_fresh).validated(ridge).schedule == "lockstep"
    with pytest.raises(jaxmoe.JaxMoEInputError, match="'queue' needs the 'lm' solver or another Solver with a fresh"):
        jaxmoe.FitOptions(solver=no_fresh, schedule="queue")
    with pytest.raises(jaxmoe.JaxMoEInputError, match="solver='no-fresh': has no fresh state"):
        jaxmoe.solve_queue(ridge.fitted_model(2), np.zeros((1, 1, 4)), np.zeros((1, 4)), np.ones((1, 4)),
                           np.zeros((1, 6)), np.zeros(1, int), np.ones(1, int), lanes=1, solver=no_fresh)


def test_explicit_block_size_gives_the_default_fits(ridge, default_fit):
    """An explicit block length is passed down (no module global): the CPU default's length gives the same fits
    bit for bit; another length sums in another order, the same fits to round-off."""
    same = jaxmoe.fit_curve(ridge, **STUDY, block_size=problem.default_block_size(jax.local_devices()[0].platform))
    _assert_same_fits(same, default_fit)
    short = jaxmoe.fit_curve(ridge, **STUDY, block_size=64)
    np.testing.assert_array_equal(short.status, default_fit.status)
    np.testing.assert_allclose(short.objective, default_fit.objective, rtol=1e-9)
