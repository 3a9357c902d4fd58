"""Sweep configs: presets round-trip through the TOML schema, normalisation is complete and idempotent,
overrides re-derive defaults, errors name field / value / what is allowed, theory slopes per Table 1 row."""

import jax
import numpy as np
import pytest

import jaxmoe
from jaxmoe.sweeps.config import config_from_dict, differences, load_config, preset_config
from jaxmoe.sweeps.report import theory_rates

HIERARCHICAL = """
name = "h"
[model]
family = "hierarchical"
expert = "tanh"
d = 1
k1 = 2
k_star = 2
[truth]
kappa = [0.0, 0.0]
omega = [[6.0], [0.0]]
beta0 = [[-4.0, 0.0], [4.0, 0.0]]
beta1 = [[[8.0], [0.0]], [[8.0], [0.0]]]
eta = { a = [[[2.0], [-2.0]], [[1.5], [-1.0]]], b = [[-1.0, 1.0], [0.5, -0.5]] }
[data]
inputs = { law = "truncated_normal", std = 0.5 }
[solver]
options = { max_iter = 50 }
"""


@pytest.mark.parametrize("name", jaxmoe.PRESET_NAMES)
def test_preset_round_trip(name):
    config = preset_config(name)
    setting, preset = config.setting(), jaxmoe.get_preset(name)
    assert (setting.name, setting.k_fit, setting.k_star, setting.sigma, setting.inputs) == \
           (preset.name, preset.k_fit, preset.k_star, preset.sigma, preset.inputs)
    x = np.linspace(-1, 1, 9)[None]
    with jax.enable_x64(True):
        np.testing.assert_array_equal(setting.model(setting.truth_params(), x), preset.model(preset.truth_params(), x))
    # The stored (hashed) config re-validates to itself: normalisation is complete and idempotent.
    again = config_from_dict({**config.hashed(), "labels": config.spec["labels"]})
    assert again.hash == config.hash and again.hashed() == config.hashed()
    assert config.spec["labels"]["theory"] == preset.theory and config.spec["preset"] == name


def test_custom_hierarchical_toml(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text(HIERARCHICAL)
    config = load_config(str(path))
    setting = config.setting()
    assert type(setting.model).__name__ == "HierarchicalMoE" and setting.model.k1 == 2 and setting.k_fit == 3
    assert setting.inputs == jaxmoe.TruncatedNormalInputs(0.5, -1.0, 1.0)
    assert config.spec["solver"]["options"]["max_iter"] == 50 and config.spec["solver"]["restarts"] == 32
    assert set(theory_rates(config.spec)) >= {"voronoi_hierarchical", "level1_error", "overfit_error"}
    with pytest.raises(jaxmoe.JaxMoEInputError, match=r"truth=\['beta0', 'beta1', 'eta', 'kappa'\]: must have exactly"):
        config_from_dict({**config.raw, "truth": {k: v for k, v in config.raw["truth"].items() if k != "omega"}})


def test_preset_in_toml_with_overrides(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('preset = "dts-nonlinear-router"\n[model]\nk_fit = 2\n[sweep]\nsizes = [500, 100]\n')
    config = load_config(str(path))
    assert config.name == "p" and config.sizes == (100, 500) and config.spec["model"]["router"] == "tanh"
    assert config.spec["model"]["k_fit"] == 2 and config.spec["solver"]["restarts"] == 1  # k = k*: one start
    assert config.spec["solver"]["init_noise"] == 0.1
    path.write_text('preset = "softmax-ridge"\n[truth]\nbeta0 = [0.0, 0.0]\n')
    with pytest.raises(jaxmoe.JaxMoEInputError, match="cannot be given with preset"):
        load_config(str(path))


def test_overrides_and_differences():
    base = preset_config("softmax-ridge")
    assert base.spec["solver"]["restarts"] == 32 and base.spec["solver"]["init_noise"] == 0.3
    exact = base.replace(k_fit=2, sizes=[400, 100, 200], seed=3)  # the start defaults follow k_fit
    assert exact.spec["solver"]["restarts"] == 1 and exact.sizes == (100, 200, 400)
    # ... and so do LM's budget and noise-level rule (1000 and on when over-fitted; 300 and off, not written, else)
    assert differences(base.hashed(), exact.hashed()) == [
        "model.k_fit: 3 vs 2", "solver.init_noise: 0.3 vs 0.1", "solver.options.max_iter: 1000 vs 300",
        "solver.options.noise_ftol: 0.0001 vs null", "solver.options.noise_window: 100 vs null",
        "solver.restarts: 32 vs 1",
        "sweep.seed: 0 vs 3", "sweep.sizes: [300, 600, 1200, 2500, 5000, 10000, 20000] vs [100, 200, 400]"]
    adam = base.replace(solver="adam")
    assert adam.spec["solver"]["options"]["learning_rate"] == 0.01 and "scaling" not in adam.spec["solver"]["options"]
    assert base.replace(name="other").hash != base.hash  # the name is a column of the results


@pytest.mark.parametrize("change, message", [
    (("solver", "options", {"max_iters": 5}), "solver.options.max_iters=5: unknown option of solver 'lm'"),
    (("solver", "lanes", -1), "solver.lanes=-1: must be an integer >= 0"),
    (("sweep", "replicates", 0), "sweep.replicates=0: must be an integer >= 1"),
    (("sweep", "sizes", [100, 100]), "sweep.sizes=[100, 100]: must not repeat a size"),
    (("sweep", "seed", 2**31), "sweep.seed=2147483648: must be an integer >= 0 and < 2147483648"),
    (("data", "inputs", {"law": "uniform", "low": 1.0, "high": -1.0}), "data.inputs="),
    (("data", "inputs", {"law": "cauchy"}), "data.inputs.law='cauchy': must be one of"),
    (("model", "router", "tanh"), "model.router='tanh': is only for family 'dense_to_sparse'"),
    (("model", "d", 2), "truth.beta1.shape=(2, 1): must be (2, 2)"),
    (("solver", "reference", "yes"), "solver.reference='yes': must be true or false"),
])
def test_errors_name_field_value_and_rule(change, message):
    raw = preset_config("softmax-ridge").hashed()
    section, key, value = change
    raw[section][key] = value
    with pytest.raises(jaxmoe.JaxMoEInputError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_theory_rates_follow_table_1():
    rates = {name: theory_rates(preset_config(name).spec) for name in jaxmoe.PRESET_NAMES}
    assert all(r["l2_error"][0] == -0.5 for r in rates.values())
    assert rates["softmax-ridge"]["voronoi_d1"][0] == -0.5 and rates["softmax-ridge"]["overfit_error"][0] == -0.25
    assert rates["hierarchical-ridge"]["level1_error"][0] == -0.5
    for name, metric in [("softmax-linear", "voronoi_d1"), ("dts-linear-router", "voronoi_temperature"),
                         ("hierarchical-linear", "level1_error")]:
        slope, why = rates[name][metric]
        assert slope is None and why.startswith("slower than any polynomial")
    assert rates["dts-nonlinear-router"]["voronoi_d4"][0] == -0.5


def test_engine_settings_are_fit_curves_defaults_and_not_hashed():
    base = preset_config("softmax-ridge")
    assert base.spec["engine"] == {"memory_gib": None, "lanes": None, "block_size": None, "chunk_size": None}
    defaults = jaxmoe.FitOptions.defaults_dict(overfitted=True)
    kwargs = base.fit_kwargs()
    for key in ("memory_gib", "lanes", "block_size", "chunk_size", "restarts", "init_noise", "init_scale"):
        assert kwargs[key] == defaults[key], key  # the config restates nothing: fit_curve decides
    tuned = config_from_dict({"preset": "softmax-ridge", "engine": {"memory_gib": 8.0, "lanes": 3, "block_size": 0}})
    assert tuned.hash == base.hash  # speed only: the same sweep, resumable with other engine settings
    assert tuned.fit_kwargs()["lanes"] == 3 and tuned.fit_kwargs()["block_size"] == 0
    legacy = config_from_dict({"preset": "softmax-ridge", "solver": {"memory_gib": 1.5, "lanes": 0}})
    assert legacy.spec["engine"]["memory_gib"] == 1.5 and legacy.spec["engine"]["lanes"] is None
    assert legacy.hash != base.hash  # written in [solver], the old place, they are hashed as they were


@pytest.mark.parametrize("engine, message", [
    ({"lanes": 0}, "engine.lanes=0: must be an integer >= 1"),
    ({"memory_gib": -1.0}, "engine.memory_gib=-1.0: must be"),
    ({"block_size": "full"}, "engine.block_size='full': must be an integer >= 0"),
    ({"workers": 2}, "engine.workers=2: unknown key"),
])
def test_bad_engine_settings_are_one_line(engine, message):
    with pytest.raises(jaxmoe.JaxMoEInputError, match="^" + message.replace("(", r"\(")):
        config_from_dict({"preset": "softmax-ridge", "engine": engine})
    with pytest.raises(jaxmoe.JaxMoEInputError, match=r"^engine.lanes=4: is the LM work-queue width"):
        config_from_dict({"preset": "softmax-ridge", "solver": {"name": "adam"}, "engine": {"lanes": 4}})


# softmax-ridge as its preset config was before the over-fitted LM budget (its options then: max_iter 300, no rule)
OLD_SOFTMAX_RIDGE = {"preset": "softmax-ridge", "solver": {"options": {"max_iter": 300}}}


def test_a_config_written_before_the_engine_table_keeps_its_hash():
    """Folders made before [engine] existed stored solver.memory_gib = 2.0 and solver.lanes = 0 in config.json;
    re-read, that config must hash as it did (its chunks carry the hash), so report and --resume keep working."""
    stored = config_from_dict(OLD_SOFTMAX_RIDGE).hashed()
    stored["solver"] = {**stored["solver"], "memory_gib": 2.0, "lanes": 0}
    old = config_from_dict(stored)
    assert old.hash == "d4c0318ef7e2bbea"  # softmax-ridge's hash before the change (commit 3bb09cb)
    assert old.fit_kwargs()["memory_gib"] == 2.0 and old.fit_kwargs()["lanes"] is None
    assert config_from_dict(old.hashed()).hash == old.hash  # idempotent
    assert preset_config("softmax-ridge").hash != old.hash  # a fresh config no longer restates the CPU defaults


def test_init_noise_decay_is_hashed_only_when_set_and_checked():
    plain = preset_config("softmax-ridge")
    assert "init_noise_decay" not in plain.spec["solver"]  # configs written before it keep their hash
    assert config_from_dict({"preset": "softmax-ridge", "solver": {"init_noise_decay": 0.0}}).hash == plain.hash
    oracle = config_from_dict({"preset": "softmax-ridge", "solver": {"restarts": 1, "init_noise": 0.005,
                                                                       "init_noise_decay": 0.083}})
    assert oracle.hash != plain.hash and oracle.fit_kwargs()["init_noise_decay"] == 0.083
    from jaxmoe.sweeps.report import estimator
    assert estimator(oracle.spec).startswith("oracle-initialised: one start at the split truth (noise 0.005 n^-0.083)")
    assert estimator(plain.spec) == "least squares: the best of 32 starts (near_truth, noise 0.3)"
    with pytest.raises(jaxmoe.JaxMoEInputError, match=r"^solver.init_noise_decay=-1: must be a finite number >= 0"):
        config_from_dict({"preset": "softmax-ridge", "solver": {"init_noise_decay": -1}})


@pytest.mark.parametrize("solver", ["lm", "lbfgs", "adam"])
def test_the_default_gradient_tolerance_scales_with_the_noise(solver):
    """gtol's default is 1e-9 (sigma / 0.1)^2 (floor 1e-14), in the sweep config as in fit_curve; at sigma = 0.1
    it is 1e-9 exactly, so the presets' configs keep their hash; a gtol written out is kept as written."""
    from jaxmoe.estimation.solvers import GTOL_FLOOR, noise_scaled_gtol
    assert noise_scaled_gtol(0.1) == 1e-9 and noise_scaled_gtol(0.0) == GTOL_FLOOR == 1e-14
    np.testing.assert_allclose([noise_scaled_gtol(s) for s in (0.3, 0.01, 0.001)], [9e-9, 1e-11, 1e-13], rtol=1e-12)
    raw = {"preset": "softmax-ridge", "solver": {"name": solver}}
    for sigma in (0.1, 0.01, 0.001, 0.0):
        config = config_from_dict({**raw, "data": {"sigma": sigma}})
        assert config.spec["solver"]["options"]["gtol"] == noise_scaled_gtol(sigma)
        setting = config.setting()
        options = jaxmoe.FitOptions(solver=solver).validated(setting)
        assert options.solver.config.gtol == noise_scaled_gtol(sigma)  # fit_curve's default is the config's
    assert config_from_dict(OLD_SOFTMAX_RIDGE).hash == "6b9f6232470a1957"  # as before noise-scaled tolerances
    small = config_from_dict({**raw, "data": {"sigma": 0.001}})
    assert small.replace(sigma=0.1).spec["solver"]["options"]["gtol"] == 1e-9  # --sigma re-derives it
    kept = config_from_dict({**raw, "data": {"sigma": 0.001}, "solver": {"name": solver, "options": {"gtol": 1e-9}}})
    assert kept.spec["solver"]["options"]["gtol"] == 1e-9 and kept.hash != small.hash
    given = jaxmoe.get_solver(solver, gtol=1e-7)  # a Solver object keeps its own tolerance
    assert jaxmoe.FitOptions(solver=given).validated(small.setting()).solver.config.gtol == 1e-7


def test_fewer_samples_than_free_parameters_is_refused_and_a_thin_design_warned(tmp_path):
    """softmax-ridge over-fitted (k = 3): 12 parameters, the gauge pins the last atom's beta0 and beta1, so 10
    are free. n = 9 is refused in one line; n = 10 (interpolation) and 2 sizes are warned about, before any fit."""
    from jaxmoe.sweeps import runner
    from jaxmoe.sweeps.config import free_parameters
    from sweep_fakes import fake_run_chunk

    assert free_parameters(jaxmoe.get_preset("softmax-ridge")) == 10
    assert free_parameters(jaxmoe.get_preset("softmax-ridge").replace(k_fit=2)) == 6
    with pytest.raises(jaxmoe.JaxMoEInputError) as err:
        config_from_dict({"preset": "softmax-ridge", "sweep": {"sizes": [9, 100, 200]}})
    assert str(err.value).startswith("sweep.sizes=[9]: must be >= 10, the fitted model's free parameters (k = 3)")
    config = config_from_dict({"preset": "softmax-ridge", "sweep": {"sizes": [10, 100], "replicates": 2}})
    assert config.design_warnings() == [
        "sweep.sizes=[10, 100]: fewer than 3 sizes, so no slope can be fitted",
        "sweep.sizes: n = 10 equals the fitted model's 10 free parameters: the fit interpolates"]
    assert config_from_dict({"preset": "softmax-ridge", "sweep": {"sizes": [11, 100, 200]}}).design_warnings() == []
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "run_chunk", fake_run_chunk)
        jaxmoe.run_sweep(config, str(tmp_path / "s"), num_bootstrap=10, plots=False, log=lines.append)
    assert lines[:2] == [f"jaxmoe: warning: {w}" for w in config.design_warnings()]


def test_the_over_fitted_lm_budget_is_the_same_in_a_config_and_in_fit_curve():
    """Over-fitted (k > k*) LM fits get max_iter 1000 and the noise-level rule (window 100, c = 1e-4) by
    default, in the sweep config as in fit_curve; exact-fitted ones 300 and no rule; a config that sets its own
    max_iter gets the plain defaults (so a stored config, which always does, re-reads and hashes as it was)."""
    from jaxmoe.estimation.levenberg_marquardt import LMConfig
    over = preset_config("softmax-ridge")
    exact = config_from_dict({"preset": "softmax-ridge", "model": {"k_fit": 2}})
    for config, (max_iter, window) in [(over, (1000, 100)), (exact, (300, 0))]:
        lm = jaxmoe.FitOptions().validated(config.setting()).solver.config
        assert lm == LMConfig(max_iter=max_iter, noise_window=window)  # fit_curve's default, gtol 1e-9 at sigma 0.1
        assert config.fit_kwargs()["solver"].config == lm  # ... is the config's
    assert over.spec["solver"]["options"]["noise_ftol"] == 1e-4
    assert config_from_dict(over.hashed()).hash == over.hash  # a stored config re-reads as it was written
    own = config_from_dict({"preset": "softmax-ridge", "solver": {"options": {"max_iter": 500}}})
    assert own.fit_kwargs()["solver"].config == LMConfig(max_iter=500)  # its own budget: no rule
    off = config_from_dict({"preset": "softmax-ridge", "solver": {"options": {"noise_window": 0}}})
    assert off.fit_kwargs()["solver"].config == LMConfig(max_iter=1000)  # the rule turned off by hand
    lbfgs = config_from_dict({"preset": "softmax-ridge", "solver": {"name": "lbfgs"}})
    assert lbfgs.spec["solver"]["options"]["max_iter"] == 500  # only LM has an over-fitted budget
    assert jaxmoe.FitOptions(solver="lbfgs").validated(over.setting()).solver.max_iter == 500
    assert over.replace(k_fit=2).hash == exact.hash  # the budget follows k_fit through an override
