"""The lower-bound lab (`jaxmoe.bounds`): closed-form profiles, the two-point curve's closed form, a ridge
profile's exponent, symmetries that move the loss, bad input."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoe import JaxMoEInputError, get_preset
from jaxmoe.bounds import bound_verdict, inverse_bound, quadrature, two_point_curve
from jaxmoe.bounds.profile import InverseBoundProfile, default_eps, local_exponent, resolvable, symmetry_losses
from jaxmoe.bounds.quadrature import quadrature_error
from jaxmoe.data import TruncatedNormalInputs, UniformInputs

SIGMOID_CONFIG = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "sigmoid-gating.toml")


@pytest.mark.parametrize("r, closed_form", [(1.0, lambda e: e / 2), (2.0, lambda e: np.sqrt(e / 3))])
def test_closed_form_omega_of_one_linear_atom(r, closed_form, one_linear_atom, one_linear_profile):
    eps = np.array([0.5, 0.1, 0.02])
    prof = one_linear_profile if r == 1.0 else inverse_bound(one_linear_atom(), loss="d2r", r=r, eps=eps, starts=4,
                                                             iterations=150)
    # The penalty leaves D at most 1e-3 below eps (FEASIBLE), so omega is within 2e-3 of the closed form.
    np.testing.assert_allclose(prof.omega, closed_form(prof.eps), rtol=2e-3)
    assert prof.resolvable.all() and not prof.at_floor.any()
    assert np.all(prof.omega <= prof.omega_found * (1 + 1e-12))  # the envelope is below every found point


@pytest.mark.parametrize("r, closed_form", [(1.0, lambda e: e / 2), (2.0, lambda e: np.sqrt(e / 3))])
def test_gauss_newton_reaches_the_closed_form_to_round_off(r, closed_form, one_linear_atom):
    # The constraint is exact (linearised, then restored along the offset), not a penalty: no 1e-3 slack in D,
    # so omega is the closed form to round-off (measured 3e-15), and every start ends at it.
    prof = inverse_bound(one_linear_atom(), loss="d2r", r=r, eps=np.array([0.5, 0.1, 0.02]), starts=4,
                         iterations=30, optimiser="gauss_newton")
    np.testing.assert_allclose(prof.omega, closed_form(prof.eps), rtol=1e-12)
    np.testing.assert_allclose(prof.loss_found, prof.eps, rtol=1e-12)
    assert prof.optimiser == "gauss_newton" and prof.resolvable.all() and np.all(prof.kept_starts == 4)


def test_both_optimisers_give_the_lower_envelope_of_each(one_linear_atom, one_linear_profile):
    # "both" runs the same starts through each optimiser: its kept points are the union of theirs, so its
    # envelope is the pointwise minimum of the two envelopes, and it keeps up to twice the starts.
    eps = np.array([0.5, 0.1, 0.02])
    gn = inverse_bound(one_linear_atom(), loss="d2r", r=1.0, eps=eps, starts=4, iterations=150,
                       optimiser="gauss_newton")
    both = inverse_bound(one_linear_atom(), loss="d2r", r=1.0, eps=eps, starts=4, iterations=150, optimiser="both")
    np.testing.assert_allclose(both.omega, np.minimum(one_linear_profile.omega, gn.omega), rtol=1e-12)
    assert np.all(both.kept_starts == 8) and both.start_status.shape == (3, 8) and both.optimiser == "both"


class _AnisotropicPath:
    """A duck-typed problem whose optimal offsets at eps are (sqrt(eps), eps) (an over-fitted split's location and
    weight): D = (d0^2 + d1) / 2, and ||f_G - f*||^2 = (d0^2 - d1)^2 vanishes exactly on that curve."""

    def loss(self, base, d):
        return 0.5 * (d[0] ** 2 + d[1])

    def sq(self, base, d):
        return (d[0] ** 2 - d[1]) ** 2


def test_secant_continuation_follows_an_anisotropic_optimum_that_rescaling_leaves():
    # Through the optima at e2 > e1 the secant predictor extrapolates each coordinate by its own power (1/2 and 1)
    # and lands on the optimum at e; rescaling the last optimum along itself cannot (its two coordinates would
    # have to scale differently), so its start is off the curve, and secant keeps the lower of the two.
    from jaxmoe.bounds import CONTINUATIONS

    def opt(e):
        return jnp.array([np.sqrt(e), e])

    prob, base, (e2, e1, e) = _AnisotropicPath(), None, (0.04, 0.02, 0.005)
    with jax.enable_x64(True):
        args = (prob, base, opt(e1), opt(e2), jnp.asarray(e), jnp.asarray(e1), jnp.asarray(e2))
        secant, plain = CONTINUATIONS["secant"](*args), CONTINUATIONS["rescale"](*args)
        np.testing.assert_allclose(secant, opt(e), rtol=1e-10)
        np.testing.assert_allclose([prob.loss(base, secant), prob.loss(base, plain)], [e, e], rtol=1e-10)
        assert prob.sq(base, secant) < 1e-20 < 1e-8 < prob.sq(base, plain)
        first = CONTINUATIONS["secant"](prob, base, opt(e1), opt(e1), jnp.asarray(e), 0.0, 0.0)  # no history yet
        np.testing.assert_array_equal(first, plain)


def test_secant_continuation_keeps_the_closed_form(one_linear_atom):
    prof = inverse_bound(one_linear_atom(), loss="d2r", r=2.0, eps=np.array([0.5, 0.1, 0.02, 0.004]), starts=4,
                         iterations=30, optimiser="gauss_newton", continuation="secant")
    np.testing.assert_allclose(prof.omega, np.sqrt(prof.eps / 3), rtol=1e-12)
    assert prof.continuation == "secant" and np.all(prof.kept_starts == 4)


def _two_exponentials(p, x):
    return 0.5 * jnp.exp(p["u"] * x) + 0.5 * jnp.exp(p["v"] * x)


def test_path_difference_is_exact_where_the_plain_difference_cancels():
    import jax

    from jaxmoe.bounds import path_difference
    with jax.enable_x64(True):
        x = jnp.linspace(-1.0, 1.0, 21)
        # f quadratic in the parameters: the t-integrand is linear, so two nodes are exact
        quad = lambda p, x: p["a"] * x + p["b"] ** 2 * x ** 2  # noqa: E731
        g0, g = {"a": 2.0, "b": 0.5}, {"a": 1.25, "b": -0.75}
        np.testing.assert_allclose(path_difference(quad, g0, g, x, nodes=2), quad(g, x) - quad(g0, x), rtol=1e-14,
                                   atol=1e-15)
        # two atoms split apart by +-h: f_G - f_G0 = e^{0.3x} 2 sinh^2(h x / 2) ~ 5e-15 x^2, which the plain
        # difference of two O(1) evaluations gets to ~1e-16 only; the path's terms are O(h), its round-off O(u h)
        h = 1e-7
        g0, g = {"u": 0.3, "v": 0.3}, {"u": 0.3 + h, "v": 0.3 - h}
        exact = np.exp(0.3 * x) * 2 * np.sinh(h * x / 2) ** 2
        rel = lambda e: np.linalg.norm(np.asarray(e) - exact) / np.linalg.norm(exact)  # noqa: E731
        assert rel(_two_exponentials(g, x) - _two_exponentials(g0, x)) > 1e-3  # the cancellation is real here
        assert rel(path_difference(_two_exponentials, g0, g, x)) < 1e-8
        diff, size = path_difference(_two_exponentials, g0, g, x, magnitude=True)
        # the per-coordinate terms are O(h) (0.5 h x e^{0.3 x} each), not O(h^2) like their sum: the floor's scale
        np.testing.assert_allclose(size, h * np.abs(x) * np.exp(0.3 * x), rtol=1e-6)
        assert np.all(np.abs(np.asarray(diff) - exact) <= 2 * 2.2e-16 * np.asarray(size) + 1e-300)


def test_path_difference_profile_keeps_the_closed_form_and_lowers_the_floor(one_linear_atom):
    eps = np.array([0.5, 0.1, 0.02])
    kw = dict(loss="d2r", r=2.0, eps=eps, starts=4, iterations=30, optimiser="gauss_newton")
    direct = inverse_bound(one_linear_atom(), **kw)
    path = inverse_bound(one_linear_atom(), difference="path", path_nodes=4, **kw)
    np.testing.assert_allclose(path.omega, np.sqrt(eps / 3), rtol=1e-12)  # f linear in (a, b): the rule is exact
    np.testing.assert_allclose(path.omega, direct.omega, rtol=1e-12)
    assert path.difference == "path" and path.path_nodes == 4 and np.all(path.quadrature_error < 1e-12)
    from jaxmoe.bounds import pool_profiles
    pooled = pool_profiles(one_linear_atom(), {2.0: path})[2.0]  # pooled omegas recomputed along the path
    np.testing.assert_allclose(pooled.omega, path.omega, rtol=1e-12)
    with pytest.raises(JaxMoEInputError, match="^profiles=.*difference"):
        pool_profiles(one_linear_atom(), {1.0: direct._replace(r=1.0), 2.0: path})


def test_path_difference_is_refused_where_the_split_changes_f():
    # sigmoid gates are not normalised: splitting an atom's logit by log 2 changes f, so f_G - f_{G0} would be the
    # profile of another truth; refused in one line before any optimisation
    from jaxmoe import sweeps
    setting = sweeps.load_config(SIGMOID_CONFIG).setting()
    with pytest.raises(JaxMoEInputError, match=r"^difference='path': needs f = f\* at the split truth") as err:
        inverse_bound(setting, loss="sigmoid", eps=np.array([1e-2]), starts=1, iterations=1, difference="path")
    assert "\n" not in str(err.value)


def test_path_difference_is_accepted_where_a_symmetric_image_is_bit_exact():
    # dts-nonlinear-router's gate translation reproduces f bit for bit (a measured floor of 0) while the split
    # truth's f differs from f* by 1e-16 (its rounded logits): the check must use the plain floor k u ||f*||
    prof = inverse_bound(get_preset("dts-nonlinear-router"), loss="d4", eps=np.array([0.1]), starts=1, iterations=2,
                         optimiser="gauss_newton", difference="path")
    assert prof.difference == "path" and np.isfinite(prof.omega).all() and np.all(prof.floor > 0)


def test_path_difference_moves_the_floor_near_the_truth():
    # softmax-ridge at eps 1e-5: the plain difference's floor is ~1e-16 ||f*||; the path's is ~u |G - G0|
    kw = dict(loss="d1", eps=np.array([1e-5]), starts=2, iterations=5, optimiser="gauss_newton")
    direct = inverse_bound(get_preset("softmax-ridge"), **kw)
    path = inverse_bound(get_preset("softmax-ridge"), difference="path", **kw)
    assert path.floor[0] < 1e-4 * direct.floor[0], (path.floor, direct.floor)  # measured 1.5e-22 vs 8.3e-17
    np.testing.assert_allclose(path.omega, direct.omega, rtol=1e-6)  # omega ~ 2e-11, far above both floors


def test_path_profile_measures_are_split_truth_plus_the_exact_offset():
    # At eps = 1e-12 the offsets are ~1e-12 while float64's grid around the split truth is u |theta_0| ~ 1e-16
    # apart: G = fl(G0 + delta) would move omega by ~1e-4 of itself. The path takes the offset itself, and the
    # measure keeps its part below the grid (measures_low), so pooling and the Taylor check evaluate that G
    from jaxmoe.bounds import pool_profiles, taylor_check
    setting = get_preset("softmax-ridge")
    prof = inverse_bound(setting, loss="d1", eps=np.array([1e-12]), starts=2, iterations=5, optimiser="gauss_newton",
                         difference="path")
    low = prof.measures_low
    assert low.shape == (1, sum(a[0].size for a in jax.tree_util.tree_leaves(prof.measures)))  # (eps, parameters)
    assert np.any(low != 0) and np.all(np.abs(low) < 1e-15)  # below the grid of O(1) coordinates
    np.testing.assert_allclose(pool_profiles(setting, {"own": prof})["own"].omega, prof.omega, rtol=1e-10)
    rounded = pool_profiles(setting, {"own": prof._replace(measures_low=None)})["own"]
    assert abs(rounded.omega[0] / prof.omega[0] - 1) > 1e-8  # G rounded to the grid is another measure
    np.testing.assert_allclose(taylor_check(setting, prof).omega_taylor, prof.omega, rtol=1e-8)
    direct = inverse_bound(setting, loss="d1", eps=np.array([1e-12]), starts=2, iterations=5, optimiser="gauss_newton")
    assert direct.difference == "direct" and np.all(direct.measures_low == 0)  # its G is the rounded one


def test_pooling_the_measures_of_several_r_keeps_the_closed_form(one_linear_atom, one_linear_profile):
    from jaxmoe.bounds import pool_profiles
    eps = np.array([0.5, 0.1, 0.02])
    two = inverse_bound(one_linear_atom(), loss="d2r", r=2.0, eps=eps, starts=4, iterations=150)
    pooled = pool_profiles(one_linear_atom(), {1.0: one_linear_profile, 2.0: two})
    for r, own, closed in ((1.0, one_linear_profile, eps / 2), (2.0, two, np.sqrt(eps / 3))):
        assert np.all(pooled[r].omega <= own.omega * (1 + 1e-9))  # its own points are in the pool
        np.testing.assert_allclose(pooled[r].omega, closed, rtol=2e-3)  # and nothing beats the infimum
        assert pooled[r].pooled_from == (1.0, 2.0) and pooled[r].resolvable.all()
    with pytest.raises(JaxMoEInputError, match="^profiles="):
        pool_profiles(one_linear_atom(), {1.0: one_linear_profile._replace(measures=None)})


def test_pooling_runs_of_one_r_on_different_grids_takes_the_envelope_of_both(one_linear_atom, one_linear_profile):
    # Runs of one r with other grids, optimisers or continuations pool like several r: each keeps its own grid and
    # its envelope is over every measure of every run (hierarchical-ridge's 8 / 16 / 32 a decade, lower_bound.md)
    from jaxmoe.bounds import pool_profiles
    gn = inverse_bound(one_linear_atom(), loss="d2r", r=1.0, eps=np.array([0.1, 0.05, 0.02]), starts=4, iterations=30,
                       optimiser="gauss_newton", continuation="secant")
    pooled = pool_profiles(one_linear_atom(), {"lbfgs": one_linear_profile, "gn": gn})
    np.testing.assert_array_equal(pooled["lbfgs"].eps, one_linear_profile.eps)
    np.testing.assert_array_equal(pooled["gn"].eps, gn.eps)
    assert np.all(pooled["lbfgs"].omega <= one_linear_profile.omega * (1 + 1e-9))
    assert np.all(pooled["gn"].omega <= gn.omega * (1 + 1e-9))
    common = np.minimum(one_linear_profile.omega[1:], gn.omega[[0, 2]])  # eps 0.1 and 0.02 are on both grids
    np.testing.assert_allclose(pooled["lbfgs"].omega[1:], common, rtol=1e-9)
    np.testing.assert_allclose(pooled["gn"].omega, gn.eps / 2, rtol=2e-3)
    assert pooled["gn"].pooled_from == ("lbfgs", "gn")


def test_inverse_bound_on_grids_pools_every_grid_on_the_finest(one_linear_atom, one_linear_profile, monkeypatch):
    from jaxmoe.bounds import inverse_bound_on_grids, profile
    options = dict(loss="d2r", r=1.0, starts=4, iterations=150)  # one_linear_profile's, on its grid
    alone = inverse_bound_on_grids(one_linear_atom(), {"coarse": one_linear_profile.eps}, **options)
    np.testing.assert_array_equal(alone.omega, one_linear_profile.omega)  # one grid: that run, unpooled
    assert alone.pooled_from == ()
    fine = np.array([0.1, 0.07, 0.05, 0.02])
    pooled = inverse_bound_on_grids(one_linear_atom(), {"coarse": one_linear_profile.eps, "fine": fine}, **options)
    np.testing.assert_array_equal(pooled.eps, fine)  # the finest grid (the most eps)
    assert pooled.pooled_from == ("coarse", "fine") and pooled.resolvable.all()
    assert set(pooled.without_run) == {"coarse", "fine"}  # two runs of one r: the verdict's leave-outs
    assert np.all(pooled.omega[[0, 3]] <= one_linear_profile.omega[1:] * (1 + 1e-9))  # eps 0.1, 0.02 on both
    np.testing.assert_allclose(pooled.omega, fine / 2, rtol=2e-3)  # and nothing beats the infimum
    with pytest.raises(JaxMoEInputError, match="^grids="):
        inverse_bound_on_grids(one_linear_atom(), {}, **options)
    monkeypatch.setattr(profile, "inverse_bound", lambda *a, **k: pytest.fail("a run started before every grid"))
    with pytest.raises(JaxMoEInputError, match="^eps="):  # the second grid's bad eps, before the first runs
        inverse_bound_on_grids(one_linear_atom(), {"ok": fine, "bad": np.array([0.1, -1.0])}, **options)
    from jaxmoe.bounds import inverse_bounds_on_grids
    options.pop("r")
    for rs in ([], [1.0, 1.0]):
        with pytest.raises(JaxMoEInputError, match="^rs="):
            inverse_bounds_on_grids(one_linear_atom(), {"ok": fine}, rs=rs, **options)


def test_quadrature_integrates_polynomials_exactly_and_sums_to_one():
    q = quadrature(UniformInputs(-1.0, 3.0), 2, 6)
    np.testing.assert_allclose(q.w.sum(), 1.0, rtol=1e-14)
    # E x1^2 x2^4 on U[-1, 3]^2 = (28/12) * (244/20)
    np.testing.assert_allclose(np.sum(q.w * q.x[0] ** 2 * q.x[1] ** 4), (28 / 12) * (244 / 20), rtol=1e-12)
    tn = quadrature(TruncatedNormalInputs(0.5), 1, 64)
    assert np.sum(tn.w * tn.x[0] ** 2) < 0.25  # truncation lowers the variance below std^2
    assert quadrature_error(lambda x: np.exp(x[0]), UniformInputs(), 1, 8) < 1e-12


def _synthetic_profile(c, m, eps, omega=None, symmetry_loss=None, floor=1e-30):
    omega = c * eps ** m if omega is None else omega
    ones = np.ones_like(eps)
    return InverseBoundProfile("d1", None, eps, omega, omega, eps, 0 * ones, ones.astype(int), floor * ones,
                               omega >= 100 * floor, 0 * ones, np.zeros((eps.size, 1), int), None,
                               symmetry_loss or {})


@pytest.mark.parametrize("m", [1.0, 2.0])
def test_two_point_maximiser_matches_its_closed_form(m):
    c, sigma = 1e-3, 0.1
    prof = _synthetic_profile(c, m, np.geomspace(10.0, 1e-8, 145))
    n = np.geomspace(1e4, 1e10, 7)
    curve = two_point_curve(prof, sigma, n)
    eps_n = (sigma ** 2 / (n * c ** 2 * m)) ** (1 / (2 * m))
    np.testing.assert_allclose(curve.eps_n, eps_n, rtol=5e-3)  # the fine grid's spacing
    np.testing.assert_allclose(curve.lower_bound, eps_n / 4 * np.exp(-1 / (2 * m)), rtol=2e-3)
    np.testing.assert_allclose(curve.local_slope, -1 / (2 * m), atol=5e-3)
    assert local_exponent(prof) == pytest.approx(m, abs=1e-9)


def test_ridge_profile_is_linear_in_eps_and_translations_leave_the_loss():
    # Continuation from eps = 1 down (starts carried along): started at eps = 0.1 directly, 4 starts found
    # omega too high there and the slope came out 1.3-1.4.
    prof = inverse_bound(get_preset("softmax-ridge"), loss="d1", eps=np.geomspace(1.0, 0.001, 7), starts=8,
                         iterations=200)
    assert prof.resolvable.all() and np.all(np.diff(prof.omega) <= 0)
    small = prof.eps <= 0.1
    slope = np.polyfit(np.log(prof.eps[small]), np.log(prof.omega[small]), 1)[0]
    assert 0.85 < slope < 1.15, slope  # omega ~ c eps (Theorem 1's inverse bound); measured 0.94
    assert 1e-6 < prof.omega[-1] / prof.eps[-1] < 4e-6  # c ~ 2.1e-6 for this truth
    assert prof.not_identifiable == [] and set(prof.symmetry_loss) == {"translation beta0",
                                                                       "translation beta1[:, 0]"}
    from jaxmoe.bounds import taylor_check
    check = taylor_check(get_preset("softmax-ridge"), prof)  # floor-free: the series agrees where it converged
    small = prof.eps <= 0.01
    assert check.converged[small].all() and np.nanmax(check.relative_difference[small]) < 1e-6


def test_linear_router_scaling_moves_the_loss_and_is_named():
    # what inverse_bound's profile carries (`symmetry_loss`), without its optimisation (a 16 s compile)
    moved = symmetry_losses(get_preset("dts-linear-router"), loss="temperature", r=1)
    assert set(moved) == {"scaling (beta1, beta0, tau)", "translation beta0", "translation beta1[:, 0]"}
    assert moved["scaling (beta1, beta0, tau)"] > 1e-3 and moved["translation beta0"] < 1e-9
    prof = _synthetic_profile(1e-3, 1.0, np.geomspace(1, 1e-3, 9), symmetry_loss=moved)
    assert prof.not_identifiable == ["scaling (beta1, beta0, tau)"]
    # the translations of the softmax gates leave D1 where it is (the ridge test: inverse_bound's own)
    assert all(v < 1e-9 for v in symmetry_losses(get_preset("softmax-ridge"), loss="d1").values())


def _one_linear_atom_with_temperature():
    """k = k* = 1, linear router and expert, tau* = 1: f = a x + b whatever tau (one atom's softmax is 1), so eq. 16
    (r = 1) is |da| + |db| + |tau - tau*|: tau moves D and not f (the scaling); on the quotient omega = eps / 2."""
    from jaxmoe import DenseToSparseMoE, DenseToSparseParams, Setting
    truth = DenseToSparseParams(np.zeros(1), np.zeros((1, 1)), {"a": np.array([[2.0]]), "b": np.array([1.0])},
                                np.float64(1.0))
    return Setting("one-linear-atom-tau", DenseToSparseMoE("linear", k=1, d=1, router="linear"), truth, k_fit=1)


def test_dividing_out_the_scaling_gives_the_quotient_closed_form():
    setting = _one_linear_atom_with_temperature()
    moved = symmetry_losses(setting, loss="temperature", r=1)
    assert moved["scaling (beta1, beta0, tau)"] > 0.1  # tau moves eq. 16 at f_G = f*
    assert all(v < 1e-12 for v in symmetry_losses(setting, loss="temperature", r=1, divide_out=True).values())
    prof = inverse_bound(setting, loss="temperature", r=1, eps=np.array([0.5, 0.1, 0.02]), starts=4, iterations=150,
                         divide_out=True)
    np.testing.assert_allclose(prof.omega, prof.eps / 2, rtol=2e-3)
    assert prof.not_identifiable == [] and prof.divided_out == ("scaling (beta1, beta0, tau)",)


def test_divide_out_symmetries_keeps_f_and_is_constant_on_the_orbit():
    import jax
    import jax.numpy as jnp

    setting = get_preset("dts-linear-router")
    model, truth = setting.fitted_model(), setting.truth_params()
    g = model.random_start(jax.random.PRNGKey(3))
    scaled = g._replace(beta0=1.7 * g.beta0, beta1=1.7 * g.beta1, tau=1.7 * g.tau)
    x = jnp.linspace(-1, 1, 33)[None, :]
    rep, rep_scaled = model.divide_out_symmetries(g, truth), model.divide_out_symmetries(scaled, truth)
    np.testing.assert_allclose(model(rep, x), model(g, x), rtol=1e-6)
    np.testing.assert_allclose(rep.tau, truth.tau, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(rep), jax.tree_util.tree_leaves(rep_scaled)):
        np.testing.assert_allclose(a, b, rtol=1e-5)  # one representative per orbit
    nonlinear = get_preset("dts-nonlinear-router")
    h = nonlinear.fitted_model().random_start(jax.random.PRNGKey(3))
    assert nonlinear.fitted_model().divide_out_symmetries(h, nonlinear.truth_params()) is h
    assert nonlinear.fitted_model().divided_symmetries() == () and model.divided_symmetries() != ()


def test_default_nodes_keep_the_rule_small_in_higher_dimension():
    from jaxmoe.bounds import default_nodes
    assert default_nodes(1) == 96 and default_nodes(2) == 44 and default_nodes(3) == 12
    assert all(default_nodes(d) ** d <= 2000 for d in range(2, 7))


@pytest.mark.parametrize("kwargs, field", [
    ({"loss": "d1", "eps": [0.1, -1.0]}, "eps"),
    ({"loss": "d2r", "r": 0.5}, "r"),
    ({"loss": "d4"}, "loss"),
    ({"loss": "d1", "k": 1}, "k"),
    ({"loss": "d1", "starts": 0}, "starts"),
    ({"loss": "d1", "optimiser": "newton"}, "optimiser"),
    ({"loss": "d1", "difference": "exact"}, "difference"),
    ({"loss": "d1", "difference": "path", "path_nodes": 1}, "path_nodes"),
    ({"loss": "d1", "continuation": "newton"}, "continuation"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(JaxMoEInputError) as err:
        inverse_bound(get_preset("softmax-ridge"), iterations=2, **kwargs)
    assert str(err.value).startswith(f"{field}=")


def test_two_point_bad_input():
    prof = _synthetic_profile(1e-3, 1.0, np.geomspace(1, 1e-3, 9))
    for kwargs, field in [({"sigma": -1.0}, "sigma"), ({"sigma": 0.1, "triangle_constant": 0.5}, "triangle_constant"),
                          ({"sigma": 0.1, "sizes": [10.0]}, "sizes")]:
        with pytest.raises(JaxMoEInputError) as err:
            two_point_curve(prof, **kwargs)
        assert str(err.value).startswith(f"{field}=")


def test_resolvable_stops_at_the_first_eps_within_reach_of_the_floor():
    # omega = 5e-10 eps against a floor scattering between 6e-17 and 1.1e-16 (the 3000-iteration
    # hierarchical-ridge profile): 1.33e-5 fails the 100x test, 1e-5 passes it on a lower floor estimate
    eps = np.array([1e-4, 5.6e-5, 3.2e-5, 1.8e-5, 1.33e-5, 1e-5, 5e-6])
    omega = 5.2e-10 * eps
    floor = np.array([1e-16, 8e-17, 9e-17, 8e-17, 7.6e-17, 5e-17, 9e-17])
    ok = resolvable(eps, omega, floor)
    assert ok.tolist() == [True, True, True, True, False, False, False]
    # the order of the grid does not matter; an eps no start kept breaks the run the same way
    np.testing.assert_array_equal(resolvable(eps[::-1], omega[::-1], floor[::-1]), ok[::-1])
    kept = np.array([1, 1, 0, 1, 1, 1, 1])
    assert resolvable(eps, omega, floor, kept).tolist() == [True, True, False, False, False, False, False]
    # a top eps that fails (infeasible there, or at the floor) does not hide the resolvable range below it
    top_bad = np.where(eps == eps.max(), np.nan, omega)
    assert resolvable(eps, top_bad, floor).tolist() == [False, True, True, True, False, False, False]
    assert not resolvable(eps, np.full(eps.size, 1e-16), floor).any()


def test_a_stepped_envelope_near_the_floor_is_no_polynomial_verdict():
    """The 3000-iteration hierarchical-ridge profile's shape: omega = 5.2e-10 eps down to 5.6e-5, then flat in
    steps (one measure for two eps) above a floor of 8e-17. Its smallest decade fits m = 0.90, inside the band,
    but the two-point maximiser is pinned by the steps (rate -0.02): inconclusive, not polynomial. The same
    grid and floor with a clean power law are polynomial at -1/2."""
    eps = default_eps()
    omega = 5.2e-10 * eps
    for e, o in {4.217e-05: 2.757e-14, 3.162e-05: 1.873e-14, 2.371e-05: 1.238e-14, 1.778e-05: 1.238e-14}.items():
        omega[np.isclose(eps, e, rtol=1e-3)] = o
    omega = np.where(eps < 1.5e-5, 7.22e-15, omega)
    stepped = _synthetic_profile(0, 0, eps, omega=omega, floor=8e-17)
    stepped = stepped._replace(resolvable=resolvable(eps, omega, stepped.floor))
    got = bound_verdict(stepped)
    assert got.verdict == "inconclusive" and "not a power law" in got.why and got.rate is None, got
    assert got.exponents[None] == pytest.approx(0.90, abs=0.01)
    clean = bound_verdict(_synthetic_profile(5.2e-10, 1.0, eps, floor=8e-17))
    assert clean.verdict == "polynomial" and clean.rate == pytest.approx(-0.5, abs=0.01)


def test_verdicts_on_profiles_with_known_exponents():
    eps = np.geomspace(1.0, 1e-4, 33)
    poly = bound_verdict(_synthetic_profile(1e-3, 1.0, eps))
    assert poly.verdict == "polynomial" and poly.rate == pytest.approx(-0.5, abs=0.01)
    assert bound_verdict(_synthetic_profile(1e-3, 2.0, eps), m_theory=2.0).rate == pytest.approx(-0.25, abs=0.01)
    # omega = exp(-1 / (r eps)): local exponent 1 / (r eps) grows without bound as eps -> 0
    wide = np.geomspace(1.0, 0.01, 17)
    slow = {r: _synthetic_profile(0, 0, wide, omega=np.exp(-1 / (r * wide)), floor=1e-300) for r in (1, 2, 3, 4)}
    got = bound_verdict(slow)
    assert got.verdict == "slower_than_polynomial" and got.rate is None, got
    assert bound_verdict(_synthetic_profile(1e-3, 1.6, eps)).verdict == "inconclusive"
    sym = bound_verdict(_synthetic_profile(1e-3, 1.0, eps, symmetry_loss={"scaling": 0.3}))
    assert sym.verdict == "not_identifiable" and "scaling" in sym.why
    flat = bound_verdict(_synthetic_profile(0, 0, eps, omega=np.full(eps.size, 1e-16), floor=1e-16))
    assert flat.verdict == "not_identifiable" and "round-off" in flat.why
    assert bound_verdict(_synthetic_profile(1e-3, 1.0, eps[:5])).verdict == "inconclusive"
    with pytest.raises(JaxMoEInputError, match="^profiles="):
        bound_verdict({})
    # one theory exponent per r: max(1, 2 / r) for a strongly identifiable model with a power-r loss
    per_r = {r: _synthetic_profile(1e-3, max(1.0, 2.0 / r), eps) for r in (1.0, 2.0, 3.0)}
    theory = {r: max(1.0, 2.0 / r) for r in per_r}
    assert bound_verdict(per_r, m_theory=theory).verdict == "polynomial"
    assert bound_verdict(per_r, m_theory=1.0).verdict == "inconclusive"  # m_1 = 2 is not 1
    with pytest.raises(JaxMoEInputError, match="^m_theory="):
        bound_verdict(per_r, m_theory={1.0: 2.0})


def test_a_verdict_one_run_carries_is_inconclusive():
    # a pool whose envelope one run sets (m = 1) but is m = 0.85 without it: the pool's `polynomial` is that run's
    eps = np.geomspace(1.0, 1e-4, 33)
    lucky = _synthetic_profile(1e-3, 1.0, eps)._replace(without_run={"16 a decade": _synthetic_profile(1e-3, 0.85, eps),
                                                                     "8 a decade": _synthetic_profile(1e-3, 1.0, eps)})
    got = bound_verdict(lucky)
    assert got.verdict == "inconclusive" and got.rate is None and "only with run '16 a decade'" in got.why, got
    assert got.without_run[(None, "16 a decade")] == ("inconclusive", {None: pytest.approx(0.85)})
    assert got.without_run[(None, "8 a decade")] == ("polynomial", {None: pytest.approx(1.0)})
    assert got.exponents == {None: pytest.approx(1.0)}  # the pool's exponents, as before
    # every leave-out polynomial too: the verdict stands, with its rate
    robust = lucky._replace(without_run={"16 a decade": _synthetic_profile(2e-3, 1.02, eps)})
    kept = bound_verdict(robust)
    assert kept.verdict == "polynomial" and kept.rate == pytest.approx(-0.5, abs=0.01)
    assert kept.without_run == {(None, "16 a decade"): ("polynomial", {None: pytest.approx(1.02)})}
    # with several r, a leave-out replaces its own r's profile only (here r = 2's, the loss r = 1 is polynomial at)
    per_r = {1.0: _synthetic_profile(1e-3, 1.0, eps), 2.0: lucky._replace(r=2.0)}
    assert bound_verdict(per_r).verdict == "inconclusive"
    assert set(bound_verdict(per_r).without_run) == {(2.0, "16 a decade"), (2.0, "8 a decade")}
    # not_identifiable is exempt: a symmetry (or one G with f_G = f* to round-off) is a proof whichever run found it
    sym = lucky._replace(symmetry_loss={"scaling": 0.3})
    assert bound_verdict(sym).verdict == "not_identifiable"
    assert bound_verdict(_synthetic_profile(1e-3, 0.85, eps)._replace(
        without_run={"x": _synthetic_profile(1e-3, 1.0, eps)})).verdict == "inconclusive"  # nothing to lose


ONE_LINEAR_ATOM_TOML = """
[model]
family = "softmax"
expert = "linear"
d = 1
k_star = 1
k_fit = 1
[truth]
beta0 = [0.0]
beta1 = [[0.0]]
eta = { a = [[2.0]], b = [1.0] }
"""


def test_cli_bound_json_has_the_documented_fields(capsys, tmp_path):
    import json

    from jaxmoe.cli import main

    # one_linear_atom_setting() (conftest) as a config file, at the shapes of the closed-form test (3 eps, 4 starts, 150
    # iterations): its programs are compiled already. (--preset NAME is get_preset(NAME).)
    config = tmp_path / "one-linear-atom.toml"
    config.write_text(ONE_LINEAR_ATOM_TOML)
    code = main(["bound", str(config), "--loss", "d2r", "--r", "1", "--eps-max", "0.1", "--eps-min", "0.01",
                 "--per-decade", "2", "--starts", "4", "--iterations", "150", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"verdict", "rate", "loss", "r", "floor", "profile", "two_point"} <= set(out)
    assert out["loss"] == "d2r" and out["r"] == 1.0 and len(out["profile"]["eps"]) == 3 and out["optimiser"] == "lbfgs"
    assert out["difference"] == "direct" and out["per_decade"] == [2]
    np.testing.assert_allclose(out["profile"]["omega"], np.array(out["profile"]["eps"]) / 2, rtol=2e-3)  # closed form
    assert {"eps", "omega", "spread", "status", "resolvable"} <= set(out["profile"])
    assert {"n", "eps_n", "local_slope", "lower_bound"} <= set(out["two_point"])
    assert out["verdict"] == "inconclusive"  # 3 eps: too few for an exponent
    assert out["rays"] is False and out["profile"]["from_ray"] is None
    assert out["without_run"] == [] and out["profile"]["from_run"] is None  # one run: nothing pooled
    code = main(["bound", str(config), "--loss", "d2r", "--r", "1", "--eps-max", "0.1", "--eps-min", "0.01",
                 "--per-decade", "2", "--starts", "4", "--iterations", "150", "--rays", "--json"])
    rayed = json.loads(capsys.readouterr().out)
    assert code == 0 and rayed["rays"] is True and len(rayed["profile"]["from_ray"]) == 3
    assert np.all(np.array(rayed["profile"]["omega"]) <= np.array(out["profile"]["omega"]) * (1 + 1e-12))
    cond = out["conditioning"]  # Fisher diag(1/3, 1) in closed form; no exponent, so no onset
    assert cond["fisher_min"] == pytest.approx(1 / 3) and cond["fisher_onset"] == pytest.approx(3.0)
    assert cond["symmetry_dimension"] == 0 and cond["onset"] is None


def test_cli_bound_several_r_writes_json_and_plots(capsys, tmp_path):
    import json

    from jaxmoe.cli import main

    config = tmp_path / "one-linear-atom.toml"
    config.write_text(ONE_LINEAR_ATOM_TOML)
    out_dir = tmp_path / "bound"
    code = main(["bound", str(config), "--loss", "d2r", "--r", "1,2", "--eps-max", "0.1", "--eps-min", "0.01",
                 "--per-decade", "2", "--starts", "4", "--iterations", "150", "--sizes", "100,1000,10000",
                 "--out", str(out_dir), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["profiles"]) == {"1.0", "2.0"} and out["r"] == 1.0
    eps = np.array(out["profiles"]["2.0"]["profile"]["eps"])
    np.testing.assert_allclose(out["profiles"]["2.0"]["profile"]["omega"], np.sqrt(eps / 3), rtol=2e-3)
    # one pool over the (r, grid) runs: each eps's measure is named by its run; one run per r: none left out
    assert set(out["profiles"]["2.0"]["profile"]["from_run"]) <= {"(1.0, 2)", "(2.0, 2)"}
    assert out["without_run"] == []
    assert out["two_point"]["n"] == [100.0, 1000.0, 10000.0]
    stored = json.loads((out_dir / "bound.json").read_text())
    assert stored["verdict"] == out["verdict"] and stored["profiles"].keys() == out["profiles"].keys()
    assert (out_dir / "bound.png").stat().st_size > 10_000 and (out_dir / "bound.pdf").read_bytes()[:4] == b"%PDF"
    # a second run into the same folder is refused before any work, and the first study is kept
    before = (out_dir / "bound.json").read_bytes()
    assert main(["bound", str(config), "--out", str(out_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxmoe: error: --out=") and (out_dir / "bound.json").read_bytes() == before


@pytest.mark.parametrize("argv, field", [
    (["--preset", "softmax-ridge", "--eps-min", "1", "--eps-max", "0.1"], "--eps-min"),
    (["--preset", "softmax-ridge", "--loss", "d4"], "loss"),
    (["--preset", "softmax-linear", "--loss", "d2r", "--r", "0.5"], "r"),
    (["--preset", "nope"], "preset"),
    (["no-such.toml"], "CONFIG"),
    (["--preset", "softmax-ridge", "--k", "1"], "--k"),
    (["--preset", "softmax-ridge", "--sizes", "100"], "--sizes"),
    (["--preset", "softmax-ridge", "--optimiser", "newton"], "--optimiser"),
    (["--preset", "softmax-ridge", "--difference", "exact"], "--difference"),
    (["--preset", "softmax-ridge", "--continuation", "newton"], "--continuation"),
])
def test_cli_bound_bad_input_is_one_line_and_exit_2(argv, field, capsys):
    from jaxmoe.cli import main

    assert main(["bound", *argv, "--iterations", "2", "--starts", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"jaxmoe: error: {field}="), err


@pytest.mark.parametrize("value", ["8,0", "8,x", "8,"])
def test_cli_bound_per_decade_refuses_each_bad_entry_in_one_line(value, capsys):
    from jaxmoe.cli import main

    assert main(["bound", "--preset", "softmax-ridge", "--per-decade", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxmoe: error: argument --per-decade: '"), err
    assert "must be an integer >= 1" in err[0]


def test_taylor_mode_agrees_with_float64_where_both_resolve(one_linear_atom, one_linear_profile):
    from jaxmoe.bounds import taylor_check
    # one linear atom: f is linear in (a, b), so the series ends after the first term and equals omega exactly
    check = taylor_check(one_linear_atom(), one_linear_profile, order=4)
    assert check.converged.all() and check.resolvable.all()
    np.testing.assert_allclose(check.omega_taylor, one_linear_profile.omega, rtol=1e-10)
    assert np.all(check.tail < 1e-12) and not check.below_float64_floor.any()
    with pytest.raises(JaxMoEInputError, match="^order="):
        taylor_check(one_linear_atom(), one_linear_profile, order=1)


def test_search_truths_ranks_valid_truths_by_fisher_min():
    import jax

    from jaxmoe.bounds import search_truths
    found = search_truths(get_preset("softmax-ridge"), jax.random.PRNGKey(7), candidates=6, keep=3)
    assert 1 <= len(found) <= 3
    mins = [cond.fisher_min for _, cond in found]
    assert mins == sorted(mins, reverse=True) and all(m > 0 for m in mins)
    for cand, _ in found:  # each a valid truth of the family with its gauge pinned (A.3)
        assert cand.k_star == 2 and np.all(cand.truth.beta1[-1] == 0) and cand.truth.beta0[-1] == 0
    with pytest.raises(JaxMoEInputError, match="^candidates="):
        search_truths(get_preset("softmax-ridge"), jax.random.PRNGKey(7), candidates=0)
    # a non-linear router's gauge pins beta0 only; its truths get the last atom's router zeroed as A.3 asks
    nonlinear = search_truths(get_preset("dts-nonlinear-router"), jax.random.PRNGKey(7), candidates=3, keep=3)
    mins = [cond.fisher_min for _, cond in nonlinear]  # some draws are near-degenerate (lambda_min ~ 0)
    assert len(nonlinear) == 3 and mins == sorted(mins, reverse=True) and mins[0] > 0
    for cand, _ in nonlinear:
        leaves = jax.tree_util.tree_leaves(cand.truth.beta1)
        assert all(np.all(leaf[-1] == 0) for leaf in leaves) and any(np.any(leaf[:-1] != 0) for leaf in leaves)
        assert cand.truth.beta0[-1] == 0
    # draws whose atoms coincide (a box of width 2e-9 around 0) are no truths: refused in one line naming why
    with pytest.raises(JaxMoEInputError, match="^candidates=2: gave no valid truth.*distinct"):
        search_truths(get_preset("softmax-ridge"), jax.random.PRNGKey(7), candidates=2, scale=1e-9)


def test_linear_row_profile_sits_at_the_float64_floor():
    """softmax-linear, D2r (r = 1): two atoms on one gate whose linear experts average to the true one give
    f_G = f* exactly with D > 0, so omega is at the floor from the top of the grid: `not_identifiable`."""
    # 200 iterations reached the floor on one CPU and stopped at omega = 2.3e-12 on another (2026-12-07, an
    # AVX-512 Xeon): 500 reach it on both
    prof = inverse_bound(get_preset("softmax-linear"), loss="d2r", r=1.0, eps=np.array([1.0, 0.3, 0.1]), starts=8,
                         iterations=500)
    assert prof.at_floor.all() and not prof.resolvable.any()
    v = bound_verdict(prof)
    assert v.verdict == "not_identifiable" and "round-off" in v.why


@pytest.mark.parametrize("r", [1.0, 2.0])
def test_hierarchical_linear_atoms_on_one_gate_slope_merge_exactly(r):
    """The hierarchical-linear mechanism the secant continuation found: within a group, an atom and its extra copy
    with one gate slope have proportional gates, so with linear experts any weight split (w, 1 - w) with the
    weighted-mean expert equal to the true one gives f_G = f* while eq. (29) > 0 (experiments/lower_bound.md)."""
    from jaxmoe.bounds import loss_function
    from jaxmoe.bounds.profile import split_truths

    setting = get_preset("hierarchical-linear")
    with jax.enable_x64(True):
        model, truth = setting.fitted_model(), setting.truth_params()
        splits, unravel = split_truths(model, truth, setting.k_star)
        g = unravel(splits[0])  # atoms (0, 1, copy of 0) in each group, the pair's logits beta0* - log 2
        w, c = 0.3, 0.4
        b0 = truth.beta0[1, 0]
        beta0 = g.beta0.at[1, 0].set(b0 + np.log(w)).at[1, 2].set(b0 + np.log(1 - w))
        eta = {name: e.at[1, 0].add((1 - w) * c).at[1, 2].add(-w * c) for name, e in g.eta.items()}
        merged = g._replace(beta0=beta0, eta=eta)
        x = jnp.linspace(-1.0, 1.0, 41)[None, :]
        gap = float(jnp.max(jnp.abs(model(merged, x) - setting.model(truth, x))))
        loss = float(loss_function(model, truth, "hierarchical", r)(merged))
        moved = float(jnp.max(jnp.abs(model(g._replace(eta=eta), x) - setting.model(truth, x))))
    assert gap < 1e-14 and loss > 0.05, (gap, loss)
    assert moved > 1e-3  # the weights must match the expert spread: an even split with this spread moves f


def test_steep_gates_leave_the_split_inside_the_box():
    """True slopes 6, -6, 0: the fits' gauge translates a split of atom 0 by its slope (-12, clipped to -10 by
    Theta), which moved the profile's base off the truth and made the translations 'move' D1 (0.46). The
    profile's base is the split itself, so D1 is 0 there and along the translations."""
    from jaxmoe import Setting, SoftmaxMoE, SoftmaxParams
    truth = SoftmaxParams(np.array([-2.0, -2.0, 0.0]), np.array([[6.0], [-6.0], [0.0]]),
                          {"a": np.array([[2.0], [-1.5], [1.0]]), "b": np.array([-0.5, 0.5, 1.0])})
    setting = Setting("steep-gates", SoftmaxMoE("gelu", k=3, d=1), truth)
    assert all(v < 1e-12 for v in symmetry_losses(setting, loss="d1").values())


def test_rays_carry_a_coarse_optimum_to_a_finer_grid_at_the_closed_form(one_linear_atom, one_linear_profile):
    # one linear atom, r = 1: omega = eps / 2 along the optimal direction, which is a ray from the truth, so the
    # 0.5-optimum moved along its offset is optimal at every smaller eps; the fine grid's own 1-iteration search
    # is not, and without rays the coarse optimum serves it unscaled (omega stuck at 0.25 / the search's value)
    from jaxmoe.bounds import pool_profiles
    fine_eps = np.array([0.5, 0.2, 0.1, 0.05])
    coarse = inverse_bound(one_linear_atom(), loss="d2r", r=1.0, eps=np.array([0.5]), starts=4, iterations=150)
    fine = inverse_bound(one_linear_atom(), loss="d2r", r=1.0, eps=fine_eps, starts=1, iterations=1)
    plain = pool_profiles(one_linear_atom(), {"coarse": coarse, "fine": fine})["fine"]
    rays = pool_profiles(one_linear_atom(), {"coarse": coarse, "fine": fine}, rays=True)["fine"]
    np.testing.assert_allclose(rays.omega[1:], fine_eps[1:] / 2, rtol=1e-6)  # measured: 0.1, 0.05, 0.025
    assert np.all(plain.omega[1:] > fine_eps[1:] / 2 * (1 + 1e-3))  # measured: 0.1005, 0.0502, 0.0251
    assert np.all(rays.omega <= plain.omega * (1 + 1e-12))  # more candidates: never above
    assert rays.from_ray.tolist() == [False, True, True, True] and plain.from_ray.tolist() == [False] * 4
    assert np.all(rays.measure_loss[1:] >= fine_eps[1:])  # each ray point has the D it is asked for
    # each run's share: the coarse optimum sets eps 0.5 and, moved along its ray, every smaller eps; without rays the
    # fine run's own (1-iteration) points are lower than the unscaled coarse optimum there
    assert rays.pooled_from == ("coarse", "fine") and rays.from_run.tolist() == [0, 0, 0, 0]
    assert plain.from_run.tolist() == [0, 1, 1, 1]
    # leave one run out: without the fine run, the coarse optimum alone (its omega wherever its D >= eps; its rays:
    # the closed form); without the coarse run, the fine run's own envelope
    np.testing.assert_allclose(plain.without_run["fine"].omega, coarse.omega[0], rtol=1e-9)
    np.testing.assert_allclose(rays.without_run["fine"].omega, [coarse.omega[0], *fine_eps[1:] / 2], rtol=1e-6)
    np.testing.assert_allclose(plain.without_run["coarse"].omega, fine.omega, rtol=1e-9)
    for pool in (plain, rays):
        assert set(pool.without_run) == {"coarse", "fine"}
        for left in pool.without_run.values():
            assert np.all(pool.omega <= left.omega * (1 + 1e-12)) and left.measures is None
            assert left.exponent == local_exponent(left) and left.without_run == {}
    # runs of different r are other problems, never left out
    assert pool_profiles(one_linear_atom(), {1.0: one_linear_profile, 2.0: fine._replace(r=2.0)})[1.0].without_run == {}
    # the rays of a profile's own optimum change nothing where that optimum is the closed form already
    own = pool_profiles(one_linear_atom(), {1.0: one_linear_profile}, rays=True)[1.0]
    np.testing.assert_allclose(own.omega, one_linear_profile.omega, rtol=1e-12)
    with pytest.raises(JaxMoEInputError, match="^rays="):
        pool_profiles(one_linear_atom(), {1.0: one_linear_profile}, rays="yes")
