"""The family objects (jaxmoe/families): registry, protocol, the sigmoid family, and users' own models."""

import os
import textwrap

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe import JaxMoEInputError
from jaxmoe.sweeps import config_from_dict
from jaxmoe.sweeps.config import differences
from jaxmoe.families import (
    FAMILIES,
    DenseToSparseMoE,
    HierarchicalMoE,
    SigmoidGatingMoE,
    SigmoidParams,
    SoftmaxMoE,
    family_of,
    get_family,
    regression_jacobian,
)

SIGMOID_CONFIG = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "sigmoid-gating.toml")

MODELS = {
    "softmax": SoftmaxMoE("gelu", k=3, d=2),
    "dts-linear": DenseToSparseMoE("sigmoid", k=3, d=2),
    "dts-mlp": DenseToSparseMoE("tanh", k=2, d=2, router="mlp-sigmoid"),
    "hierarchical": HierarchicalMoE("tanh", k1=2, k2=2, d=2),
    "sigmoid": SigmoidGatingMoE("tanh", k=3, d=2),
}


def _random(model, seed=0):
    with jax.enable_x64(True):
        return model.random_start(jax.random.PRNGKey(seed), scale=1.5, dtype=jnp.float64)


def test_registry_names_every_family_and_finds_it_from_its_parameters():
    assert list(FAMILIES) == ["softmax", "dense_to_sparse", "hierarchical", "sigmoid"]
    for name, model in MODELS.items():
        assert family_of(model.zeros()) is type(model)
        assert get_family(type(model).name) is type(model)
    with pytest.raises(JaxMoEInputError, match=r"^model.family='gaussian': must be one of"):
        get_family("gaussian")
    with pytest.raises(JaxMoEInputError, match=r"^truth=\(1, 2\)|^truth='tuple'"):
        family_of((1, 2))


@pytest.mark.parametrize("name", ["sigmoid"])  # the other families: tests/models_test.py
def test_structured_jacobian_matches_jacfwd(name):
    model = MODELS[name]
    with jax.enable_x64(True):
        params = _random(model, 1)
        x = jax.random.uniform(jax.random.PRNGKey(2), (2, 25), jnp.float64, -1, 1)
        f, jac = regression_jacobian(model, params, x)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        np.testing.assert_allclose(jac, jax.jacfwd(lambda t: model(unravel(t), x))(flat), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f, model(params, x), rtol=1e-12)


def test_sigmoid_gating_is_a_sum_of_logistic_gates_times_experts():
    model = SigmoidGatingMoE("tanh", k=2, d=1)
    with jax.enable_x64(True):
        p = model.make_params(beta0=[1.0, -0.5], beta1=[[4.0], [-2.0]], eta={"a": [[2.0], [-1.5]], "b": [-0.5, 0.3]})
        x = jnp.linspace(-1, 1, 9)[None, :]
        got = model(p, x)
    xs = np.linspace(-1, 1, 9)
    sig = lambda z: 1 / (1 + np.exp(-z))
    want = sig(4 * xs + 1) * np.tanh(2 * xs - 0.5) + sig(-2 * xs - 0.5) * np.tanh(-1.5 * xs + 0.3)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # no translation symmetry, so nothing is pinned: every coordinate is free in the fits' box
    lo, hi = model.bounds(gauge=True)
    assert all(np.all(np.asarray(h) > np.asarray(l)) for l, h in zip(jax.tree_util.tree_leaves(lo), jax.tree_util.tree_leaves(hi)))
    assert model.symmetries() == ()


@pytest.mark.parametrize("name", list(MODELS))
def test_split_at_zero_noise_with_k_star_atoms_is_the_truth_and_losses_vanish(name):
    model = MODELS[name]
    with jax.enable_x64(True):
        truth = model.fix_gauge(_random(model, 3))
        start = model.near_truth_split(jax.random.PRNGKey(0), truth, model.components, 0.0)
        for a, b in zip(jax.tree_util.tree_leaves(start), jax.tree_util.tree_leaves(truth)):
            np.testing.assert_allclose(a, b, atol=1e-12)
        for metric, loss in model.curve_losses().items():
            assert float(jaxmoe.LOSSES[loss](start, truth)) == pytest.approx(0.0, abs=1e-10), metric
        errors = jaxmoe.parameter_errors(start, truth, **model.loss_options)
        assert float(errors.exact_error) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", ["softmax", "dts-linear", "hierarchical"])
def test_over_fitted_split_represents_the_truth_exactly_for_softmax_gates(name):
    model = MODELS[name]
    with jax.enable_x64(True):
        truth = model.fix_gauge(_random(model, 4))
        big = model.with_k(model.components + 1)
        start = big.near_truth_split(jax.random.PRNGKey(0), truth, model.components, 0.0)
        x = jax.random.uniform(jax.random.PRNGKey(5), (2, 30), jnp.float64, -1, 1)
        np.testing.assert_allclose(big(start, x), model(truth, x), rtol=1e-12, atol=1e-12)


def test_linear_router_scaling_symmetry_is_exact_and_only_for_a_linear_router():
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(5), (2, 30), jnp.float64, -1, 1)
        for model, exact in ((DenseToSparseMoE("sigmoid", k=3, d=2), True),
                             (DenseToSparseMoE("sigmoid", k=3, d=2, router="tanh"), False)):
            p = _random(model, 6)._replace(tau=jnp.asarray(0.8))
            q = p._replace(beta0=2.0 * p.beta0, beta1=2.0 * p.beta1, tau=2.0 * p.tau)
            same = np.allclose(model(p, x), model(q, x), rtol=1e-12, atol=1e-13)
            assert same == exact
            assert any("scaling" in s for s in model.symmetries()) == exact


def test_theory_rates_come_from_the_family():
    rates = {name: jaxmoe.get_preset(name).fitted_model().theory_rates() for name in jaxmoe.PRESET_NAMES}
    assert rates["softmax-ridge"]["voronoi_d1"][0] == -0.5 and rates["softmax-ridge"]["overfit_error"][0] == -0.25
    assert rates["softmax-ridge"]["overfit_error_weighted"][0] == -0.25 and rates["softmax-ridge"]["cell_mass"][0] is None
    assert rates["softmax-linear"]["voronoi_d1"][0] is None and "Theorem 2" in rates["softmax-linear"]["voronoi_d1"][1]
    assert rates["dts-linear-router"]["voronoi_temperature"][0] is None
    assert "Theorem 3" in rates["dts-linear-router"]["exact_error"][1]
    assert rates["dts-nonlinear-router"]["voronoi_d4"][0] == -0.5
    assert rates["hierarchical-ridge"]["level1_error"][0] == -0.5
    assert "Theorem 6" in rates["hierarchical-linear"]["voronoi_hierarchical"][1]
    sigmoid = MODELS["sigmoid"].theory_rates()
    assert set(sigmoid) == {"l2_error", "voronoi_sigmoid", "exact_error", "overfit_error", "overfit_error_weighted",
                            "cell_mass"}
    assert all(slope is None for slope, _ in sigmoid.values())


def test_sigmoid_gating_runs_from_its_toml_config():
    config = jaxmoe.load_config(SIGMOID_CONFIG)
    setting = config.setting()
    assert isinstance(setting.model, SigmoidGatingMoE) and setting.k_fit == 3
    small = setting.replace(k_fit=2)  # exactly fitted: one start, a quick fit
    with jax.enable_x64(True):
        fit = jaxmoe.fit_curve(small, [400, 1600], 2, seed=0)
    assert fit.converged_fraction == 1.0
    assert np.all(fit.objective <= fit.objective_truth)
    metrics, empty = jaxmoe.fit_metrics(small, fit)
    assert set(metrics) == {"l2_error", "voronoi_sigmoid", "exact_error"}
    assert np.all(empty == 0)
    assert np.all(metrics["voronoi_sigmoid"][1] < metrics["voronoi_sigmoid"][0] * 1.5)
    assert np.all(np.isfinite(metrics["l2_error"])) and np.all(metrics["l2_error"] < 0.05)


# ------------------------------------------------------------------------------------------ users' own models
USER_MODULE = '''
import jax.numpy as jnp
import jaxmoe

sine = jaxmoe.Expert("sine", lambda x, eta: eta["a"] * jnp.sin(eta["b"] * x[0]), lambda d: {"a": (), "b": ()})

def make_cubic():
    return jaxmoe.Expert("cubic", lambda x, eta: eta["a"] * x[0] ** 3 + eta["b"], lambda d: {"a": (), "b": ()})

vector = jaxmoe.Expert("vector", lambda x, eta: eta["a"] * x, lambda d: {"a": ()})
square_router = jaxmoe.Router("square", lambda x, b: jnp.dot(b, x) ** 2, lambda d: (d,))
not_an_expert = 3
'''


def _user_config(expert="labexperts:sine", **model):
    return {"name": "user", "model": {"family": "softmax", "expert": expert, "d": 1, "k_star": 2, "k_fit": 2, **model},
            "truth": {"beta0": [0.0, 0.0], "beta1": [[3.0], [0.0]], "eta": {"a": [1.0, -0.5], "b": [2.0, 1.0]}},
            "sweep": {"sizes": [100, 200], "replicates": 2}}


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    (tmp_path / "labexperts.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)  # the working directory is importable, as from a console script
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    yield tmp_path
    __import__("sys").modules.pop("labexperts", None)


def test_a_users_expert_from_a_config_is_loaded_from_the_working_directory(user_folder):
    config = config_from_dict(_user_config())
    setting = config.setting()
    assert setting.model.expert.name == "sine"
    assert set(config.spec["model"]["sources"]) == {"expert"}
    factory = config_from_dict(_user_config("labexperts:make_cubic")).setting()
    assert factory.model.expert.name == "cubic"


def test_editing_a_users_model_changes_the_config_hash(user_folder):
    before = config_from_dict(_user_config())
    (user_folder / "labexperts.py").write_text(textwrap.dedent(USER_MODULE) + "\n# edited\n")
    after = config_from_dict(_user_config())
    assert before.hash != after.hash
    diff = differences(before.hashed(), after.hashed())
    assert any("model.sources.expert" in d for d in diff)


@pytest.mark.parametrize("expert, message", [
    ("nomodule:sine", r"^model.expert='nomodule:sine': no module 'nomodule' in the working directory"),
    ("labexperts:missing", r"^model.expert='labexperts:missing': module 'labexperts' .* has no attribute 'missing'"),
    ("labexperts:not_an_expert", r"^model.expert='labexperts:not_an_expert': must be a jaxmoe.Expert"),
    ("labexperts:vector", r"^model.expert.fn='vector': must return a float scalar"),
    ("lab experts:sine", r"must be 'package.module:name'"),
])
def test_a_bad_user_expert_is_one_line(user_folder, expert, message):
    with pytest.raises(JaxMoEInputError, match=message):
        config_from_dict(_user_config(expert))


def test_a_users_router_in_a_dense_to_sparse_config(user_folder):
    raw = _user_config("sigmoid", family="dense_to_sparse", router="labexperts:square_router")
    raw["truth"] = {"beta0": [0.0, 0.0], "beta1": [[1.5], [0.0]], "eta": {"a": [[3.0], [-2.5]], "b": [-1.0, -0.5]},
                    "tau": 1.0}
    config = config_from_dict(raw)
    assert config.setting().model.router.name == "square" and "router" in config.spec["model"]["sources"]
    with pytest.raises(JaxMoEInputError, match=r"^model.router=.*is only for family 'dense_to_sparse', not 'softmax'"):
        config_from_dict(_user_config(router="linear"))


def test_a_users_family_from_a_config(user_folder):
    (user_folder / "labfamily.py").write_text(textwrap.dedent('''
        from jaxmoe.families import SigmoidGatingMoE

        class Gated(SigmoidGatingMoE):
            """A user's family: sigmoid gating under another name."""
            name = "lab-gated"
    '''))
    raw = _user_config("tanh", family="labfamily:Gated")
    raw["truth"] = {"beta0": [1.0, 1.0], "beta1": [[4.0], [-4.0]], "eta": {"a": [[2.0], [-1.5]], "b": [-0.5, 0.3]}}
    config = config_from_dict(raw)
    assert type(config.setting().model).__name__ == "Gated" and "family" in config.spec["model"]["sources"]
    with pytest.raises(JaxMoEInputError, match=r"^model.family='labexperts:sine': must be a subclass of"):
        config_from_dict(_user_config("tanh", family="labexperts:sine"))
    assert isinstance(config_from_dict(raw).setting().truth, SigmoidParams)


def test_check_model_tests_the_condition_of_the_models_family():
    assert jaxmoe.check_model(jaxmoe.get_preset("softmax-ridge").model, d=2).verdict == "independent"
    assert jaxmoe.check_model(jaxmoe.get_preset("dts-linear-router").model, d=2).verdict == "dependent"
    with pytest.raises(JaxMoEInputError, match=r"^model='SigmoidGatingMoE': its family has no identifiability"):
        jaxmoe.check_model(MODELS["sigmoid"])


def test_identify_takes_a_users_expert_from_the_working_directory(user_folder, capsys):
    from jaxmoe import cli

    assert cli.main(["identify", "--expert", "labexperts:make_cubic", "-d", "1", "--json"]) == 0
    assert '"verdict"' in capsys.readouterr().out
    assert cli.main(["identify", "--expert", "nomodule:fn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxmoe: error: --expert='nomodule:fn': no module 'nomodule' in the working directory")


@pytest.mark.parametrize("name", list(MODELS))
def test_symmetry_tangents_are_exact_null_directions_of_the_jacobian(name):
    model = MODELS[name]
    with jax.enable_x64(True):
        params = _random(model, 7)
        if hasattr(params, "tau"):
            params = params._replace(tau=jnp.asarray(0.8))
        x = jax.random.uniform(jax.random.PRNGKey(8), (2, 40), jnp.float64, -1, 1)
        _, jac = regression_jacobian(model, params, x)
        tangents = model.symmetry_tangents(params)
        assert len(tangents) == {"softmax": 3, "dts-linear": 4, "dts-mlp": 1, "hierarchical": 3 + 2 * 3,
                                 "sigmoid": 0}[name]
        scale = np.linalg.norm(jac, 2)
        for label, t in tangents.items():
            flat_t = jax.flatten_util.ravel_pytree(t)[0]
            assert np.linalg.norm(jac @ flat_t) <= 1e-12 * scale * np.linalg.norm(flat_t), label
        # and a direction that is no symmetry moves f
        other = jax.random.normal(jax.random.PRNGKey(9), (jac.shape[1],), jnp.float64)
        assert np.linalg.norm(jac @ other) > 1e-3 * scale * np.linalg.norm(other)


@pytest.mark.parametrize("name", list(MODELS))
def test_offset_map_pins_the_gauge_and_starts_at_the_base(name):
    model = MODELS[name]
    with jax.enable_x64(True):
        base = _random(model, 10)
        p_free, to_params = model.offset_map(base)
        pinned = len(model.symmetry_tangents(base)) - (1 if name == "dts-linear" else 0)  # scaling is not pinned
        if name == "hierarchical":
            pinned = 3 + 2 * 3  # level 1 (kappa, omega) and each group's (beta0, beta1) of its last atom
        p = jax.flatten_util.ravel_pytree(base)[0].size
        assert p_free == p - pinned
        start = to_params(jnp.zeros(p_free))
        for a, b in zip(jax.tree_util.tree_leaves(start), jax.tree_util.tree_leaves(model.fix_gauge(base))):
            np.testing.assert_array_equal(a, b)
        moved = to_params(jnp.full(p_free, 0.1))
        for a, b in zip(jax.tree_util.tree_leaves(model.fix_gauge(moved)), jax.tree_util.tree_leaves(moved)):
            np.testing.assert_allclose(a, b, atol=1e-15)  # already in the gauge: the pinned coordinates stay 0
