"""`curve_metrics`: per-fit metrics equal the single-fit functions, in d = 1 (quadrature) and d = 2 (Monte Carlo)."""

import types

import jax
import numpy as np
import pytest

import jaxmoe


def _fake_fit(setting, shape, scale, seed=0):
    """A CurveFit-like object whose fits are the truth plus Gaussian noise of size `scale`."""
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda a: a + scale * rng.standard_normal(shape + a.shape), setting.truth)
    return types.SimpleNamespace(params=params, objective=np.zeros(shape), info={"k": setting.k_star})


@pytest.mark.parametrize("d", [1, 2])
def test_curve_metrics_match_single_fit_functions(d):
    base = jaxmoe.get_preset("softmax-ridge")
    if d == 2:
        truth = jaxmoe.SoftmaxParams(np.zeros(2), np.array([[4.0, 2.0], [0.0, 0.0]]),
                                     {"a": np.array([[3.0, -1.0], [-2.5, 1.5]]), "b": np.array([-1.0, -0.5])})
        base = base.replace(model=jaxmoe.SoftmaxMoE("sigmoid", k=2, d=2), truth=truth)
    fit = _fake_fit(base, (2, 3), 0.05)
    metrics = jaxmoe.curve_metrics(base, fit, l2_points=20_000)
    assert set(metrics) == {"l2_error", "voronoi_d1"}
    with jax.enable_x64(True):
        for i in range(2):
            for r in range(3):
                p = jax.tree_util.tree_map(lambda a: a[i, r], fit.params)
                if d == 1:
                    want = jaxmoe.regression_l2_error_quadrature(base.model, p, base.model, base.truth, base.inputs)
                else:
                    want = jaxmoe.regression_l2_error(jax.random.PRNGKey(0), base.model, p, base.model, base.truth,
                                                      base.inputs, 20_000)
                np.testing.assert_allclose(metrics["l2_error"][i, r], want, rtol=1e-10)
                np.testing.assert_allclose(metrics["voronoi_d1"][i, r], jaxmoe.voronoi_loss_d1(p, base.truth),
                                           rtol=1e-10)
    assert np.all(metrics["l2_error"] > 0)
    # the truth itself has zero error
    exact = jaxmoe.curve_metrics(base, _fake_fit(base, (1, 1), 0.0), l2_points=20_000)
    assert exact["l2_error"][0, 0] == pytest.approx(0.0, abs=1e-12)


def test_linear_experts_also_report_the_loss_theorem_2_is_stated_in():
    """Softmax + linear experts: D2r at r = 1, 2 next to D1 (Theorem 2 is stated in D2r), each equal to
    `voronoi_loss_d2r` at its r and labelled slower than any polynomial; ridge experts report D1 only."""
    import jax.numpy as jnp

    from jaxmoe.losses import batched_loss, voronoi_loss_d2r

    linear = jaxmoe.get_preset("softmax-linear")
    model = linear.fitted_model()
    losses = model.curve_losses()
    assert list(losses) == ["voronoi_d1", "voronoi_d2r_r1", "voronoi_d2r_r2"]
    assert list(jaxmoe.get_preset("softmax-ridge").fitted_model().curve_losses()) == ["voronoi_d1"]
    rates = model.theory_rates()
    assert all(rates[k][0] is None and rates[k][1].startswith("slower than any polynomial (Theorem 2") for k in losses)
    with jax.enable_x64(True):
        truth = linear.truth_params()
        fitted = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), linear.model.zeros())
        fitted = fitted._replace(beta0=truth.beta0 + 0.3, beta1=truth.beta1 - 0.2,
                                 eta={k: v + 0.1 for k, v in truth.eta.items()})
        batch = jax.tree_util.tree_map(lambda a: a[None], fitted)
        for r in (1, 2):
            got = float(batched_loss(losses[f"voronoi_d2r_r{r}"], batch, truth)[0])
            assert got == pytest.approx(float(voronoi_loss_d2r(fitted, truth, r=float(r))), rel=1e-12) and got > 0
