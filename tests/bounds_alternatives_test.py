"""Local alternatives and the conditioning diagnostic (`jaxmoe.bounds`): closed forms on one linear atom,
data drawn from a local alternative, onsets of synthetic profiles, the symmetry the gauge leaves, bad input."""

import numpy as np
import pytest

import jax
from jaxmoe import JaxMoEInputError, SoftmaxParams, get_preset
from jaxmoe.bounds import conditioning, local_alternatives, pair_bounds
from jaxmoe.bounds.conditioning import fisher_matrix, profile_onset
from jaxmoe.estimation import fit_data
from jaxmoe.sweeps.config import setting_to_dict
from jaxmoe.bounds.profile import InverseBoundProfile


def norm_cdf(z):
    from statistics import NormalDist
    return np.vectorize(NormalDist().cdf)(z)


def test_profile_keeps_the_measures_of_its_envelope(one_linear_profile):
    prof = one_linear_profile
    assert prof.k == 1 and prof.measures.eta["a"].shape == (3, 1, 1)
    da = np.abs(prof.measures.eta["a"][:, 0, 0] - 2.0)
    db = np.abs(prof.measures.eta["b"][:, 0] - 1.0)
    np.testing.assert_allclose(da + db, prof.measure_loss, rtol=1e-10)  # D2r of the kept G is its measure_loss
    assert np.all(prof.measure_loss >= (1 - 1e-3) * prof.eps)
    np.testing.assert_allclose(np.sqrt(da ** 2 / 3 + db ** 2), prof.omega, rtol=1e-6)  # and omega is its ||f - f*||


def test_local_alternatives_closed_form_and_never_below_the_bound(one_linear_atom, one_linear_profile):
    setting, n = one_linear_atom(), np.array([50, 400])
    la = local_alternatives(setting, one_linear_profile, n, 24, seed=3)
    # the pair maximising eps / 4 exp(-n omega^2 / (2 sigma^2)) with omega = eps / 2 (closed form)
    eps = one_linear_profile.measure_loss
    lb = eps[None, :] / 4 * np.exp(-n[:, None] * (eps[None, :] / 2) ** 2 / (2 * setting.sigma ** 2))
    np.testing.assert_allclose(la.lower_bound, lb.max(axis=1), rtol=2e-2)
    assert np.array_equal(la.alternative, lb.argmax(axis=1))
    # under G*, least squares on a x + b: E|da| + E|db| = sqrt(2 / pi) sigma / sqrt(n) (sqrt(3) + 1)
    expect = np.sqrt(2 / np.pi) * setting.sigma / np.sqrt(n) * (np.sqrt(3) + 1)
    assert np.all(np.abs(la.risk_null - expect) <= 4 * la.risk_null_se + 0.1 * expect)
    assert not la.below_bound.any() and np.all(la.risk >= la.lower_bound)
    assert np.all(la.converged_null == 1.0) and np.all(la.converged_alt == 1.0)
    # under G_n the fits are G_n + N(0, diag(3, 1) sigma^2 / n): E D(fit, G*) is a sum of folded-normal means
    g = one_linear_profile.measures
    mu = np.stack([g.eta["a"][la.alternative, 0, 0] - 2.0, g.eta["b"][la.alternative, 0] - 1.0])
    sd = setting.sigma / np.sqrt(n) * np.array([[np.sqrt(3)], [1.0]])
    folded = sd * np.sqrt(2 / np.pi) * np.exp(-mu ** 2 / (2 * sd ** 2)) + mu * (1 - 2 * norm_cdf(-mu / sd))
    mean_alt, se_alt = la.loss_alt.mean(axis=1), la.loss_alt.std(axis=1, ddof=1) / np.sqrt(24)
    assert np.all(np.abs(mean_alt - folded.sum(axis=0)) <= 4 * se_alt + 0.1 * folded.sum(axis=0))
    np.testing.assert_allclose(la.ratio, la.risk / la.lower_bound)


@jax.enable_x64(True)  # the fits' precision (float64 is the default FitOptions.precision)
def test_data_truth_draws_the_data_from_the_alternative():
    setting = get_preset("softmax-ridge")
    key, n, length = jax.random.PRNGKey(7), 40, 64
    split = setting.fitted_model().near_truth_split(jax.random.PRNGKey(0), setting.truth_params(), setting.k_star, 0.0)
    x0, y0, m0, t0 = fit_data(key, n, setting=setting, length=length)
    x1, y1, m1, t1 = fit_data(key, n, setting=setting.replace(data_truth=split), length=length)
    np.testing.assert_allclose(y1, y0, atol=1e-12)  # the split truth is the truth: same data
    moved = jax.tree_util.tree_map(lambda a: a + 0.3, split)
    x2, y2, _, _ = fit_data(key, n, setting=setting.replace(data_truth=moved), length=length)
    f_moved, f_star = setting.fitted_model()(moved, x0), setting.model(setting.truth_params(), x0)
    np.testing.assert_allclose(x2, x0)  # common random numbers: same inputs, same noise
    np.testing.assert_allclose((y2 - y0)[:n], (f_moved - f_star)[:n], atol=1e-12)
    assert np.all(y2[n:] == 0)
    with pytest.raises(JaxMoEInputError, match="^setting.data_truth="):  # a sweep config cannot carry it
        setting_to_dict(setting.replace(data_truth=moved))


def test_fisher_of_one_linear_atom_is_its_closed_form(one_linear_atom):
    cond = conditioning(one_linear_atom())
    np.testing.assert_allclose(cond.fisher_eigenvalues, [1 / 3, 1.0], rtol=1e-10)
    assert cond.fisher_onset == pytest.approx(3.0) and cond.fisher_condition == pytest.approx(3.0)
    assert cond.symmetry_dimension == 0 and cond.onset is None  # no profile: no onset


def test_the_linear_router_scaling_is_the_one_direction_the_gauge_leaves():
    fisher, tangents = fisher_matrix(get_preset("dts-linear-router"))
    assert tangents.shape[0] == 1
    np.testing.assert_allclose(fisher @ tangents[0], 0.0, atol=1e-12 * np.abs(fisher).max())
    assert conditioning(get_preset("dts-linear-router")).symmetry_dimension == 1
    # softmax translations move the pinned last gate: the gauge removes them
    assert fisher_matrix(get_preset("softmax-linear"))[1].shape[0] == 0


def _synthetic(eps, omega):
    ones = np.ones_like(eps)
    return InverseBoundProfile("d1", None, eps, omega, omega, eps, 0 * ones, ones.astype(int), 1e-30 * ones,
                               np.ones(eps.size, bool), 0 * ones, np.zeros((eps.size, 1), int), None, {})


def test_onset_of_a_power_law_and_of_a_bent_profile():
    c, m = 1e-3, 1.0
    eps = np.geomspace(1.0, 1e-6, 49)
    c_hat, top, onset = profile_onset(_synthetic(eps, c * eps ** m))
    assert c_hat == pytest.approx(c, rel=1e-9) and top == pytest.approx(1.0)
    # eps_n is inside from the first n / sigma^2: eps_n = (1 / (N c^2 m))^(1/2) <= 1 at N >= 1e6 (grid 0.1 decade)
    assert 1e6 <= onset <= 10 ** 6.2
    # omega = c eps below 1e-2 and c' eps^3 above (continuous): the power law holds below 1e-2 only
    bent = np.where(eps <= 1e-2, c * eps, c * 1e-2 * (eps / 1e-2) ** 3)
    c_hat, top, onset = profile_onset(_synthetic(eps, bent))
    assert top == pytest.approx(1e-2, rel=1e-9)
    # eps_n reaches the kink 1e-2 from above where the cubic part's maximiser does: omega^2 = 1 / (3 N) there,
    # N = 1 / (3 c^2 1e-4) = 3.3e9 (it then sits at the kink until the linear part's N = 1e10)
    assert 1 / (3e-10) <= onset <= 10 ** 0.1 / 3e-10


def test_bad_input_is_one_line(one_linear_atom, one_linear_profile):
    setting = one_linear_atom()
    bare = one_linear_profile._replace(measures=None)
    with pytest.raises(JaxMoEInputError, match="^profile="):
        pair_bounds(setting, bare, [100])
    with pytest.raises(JaxMoEInputError, match="^sizes="):
        local_alternatives(setting, one_linear_profile, [1], 4)
    with pytest.raises(JaxMoEInputError, match="^replicates="):
        local_alternatives(setting, one_linear_profile, [100], 0)
    with pytest.raises(JaxMoEInputError, match="^profile="):
        conditioning(setting, profile="not a profile")
    with pytest.raises(JaxMoEInputError):
        setting.replace(data_truth=SoftmaxParams(np.zeros(2), np.zeros((2, 1)), {"a": np.zeros((2, 1)), "b": np.zeros(2)}))
