"""Per-parameter errors by cell type, expert sup errors and the regression L2 error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe.validation import JaxMoEInputError
from jaxmoe.data import TruncatedNormalInputs, UniformInputs
from jaxmoe.losses import (
    expert_sup_errors,
    parameter_errors,
    regression_l2_error,
    regression_l2_error_quadrature,
)
from jaxmoe.families import DenseToSparseParams, SoftmaxMoE, SoftmaxParams

# jitted once per signature: eager dispatch of the many small ops is the slow part on a 2-core machine
parameter_errors = jax.jit(parameter_errors, static_argnames=("translation", "linear_router"))
expert_sup_errors = jax.jit(expert_sup_errors, static_argnums=(0,),
                            static_argnames=("inputs", "num_points", "translation"))


def _two_atom_example():
    """As in voronoi_test: the normalisation is the identity (mass 2, weighted mean slope 0.5)."""
    truth = SoftmaxParams(jnp.zeros(2), jnp.array([[1.0], [0.0]]),
                          {"a": jnp.array([[1.0], [-1.0]]), "b": jnp.zeros(2)})
    fitted = SoftmaxParams(jnp.log(jnp.array([1.0, 0.5, 0.5])), jnp.array([[1.1], [0.1], [-0.3]]),
                           {"a": jnp.array([[1.0], [-1.0], [-1.0]]), "b": jnp.array([0.0, 0.0, 0.1])})
    return fitted, truth


def test_errors_split_by_cell_type_hand_computed():
    fitted, truth = _two_atom_example()
    e = parameter_errors(fitted, truth)
    np.testing.assert_array_equal(e.cell_size, [1, 2])
    np.testing.assert_allclose(e.mass_error, [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(e.gate_error, [0.1, 0.3], rtol=1e-5)
    np.testing.assert_allclose(e.expert_error, [0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(e.atom_error, [0.1, 0.3], rtol=1e-5)
    np.testing.assert_allclose(e.exact_error, 0.1, rtol=1e-5)  # cell 0, |A_0| = 1
    np.testing.assert_allclose(e.overfit_error, 0.3, rtol=1e-5)  # cell 1, |A_1| = 2
    assert np.isnan(e.tau_error) and int(e.num_empty_cells) == 0
    # mass-weighted: masses p = (0.5, 0.25, 0.25); cell 1 has squared errors 0.01 and 0.09 + 0.01
    np.testing.assert_allclose(e.weighted_error, [0.1, np.sqrt((0.25 * 0.01 + 0.25 * 0.1) / 0.5)], rtol=1e-5)
    np.testing.assert_allclose(e.overfit_error_weighted, np.sqrt(0.055), rtol=1e-5)
    np.testing.assert_allclose(e.min_mass, [0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(e.overfit_min_mass, 0.25, rtol=1e-6)
    # translation-invariant like the losses
    moved = fitted._replace(beta0=fitted.beta0 + 1.3, beta1=fitted.beta1 - 0.7)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                           parameter_errors(moved, truth), e)


def test_nan_when_no_cell_of_a_type_and_empty_cells_counted():
    fitted, truth = _two_atom_example()
    exact = parameter_errors(truth, truth)
    assert float(exact.exact_error) == 0.0 and np.isnan(exact.overfit_error)
    assert np.isnan(exact.overfit_error_weighted) and np.isnan(exact.overfit_min_mass)
    # one fitted atom only: true atom 1's cell is empty
    lonely = SoftmaxParams(jnp.zeros(1), jnp.array([[1.0]]), {"a": jnp.array([[1.0]]), "b": jnp.zeros(1)})
    e = parameter_errors(lonely, truth, translation="none")
    np.testing.assert_array_equal(e.cell_size, [1, 0])
    assert int(e.num_empty_cells) == 1 and np.isnan(e.gate_error[1]) and np.isnan(e.overfit_error)
    assert np.isnan(e.weighted_error[1]) and np.isnan(e.min_mass[1])  # an empty cell has neither
    np.testing.assert_allclose(e.mass_error, [0.0, 1.0])  # the empty cell's mass error is exp(beta0*_1)
    np.testing.assert_allclose(e.exact_error, 0.0)


def test_dense_to_sparse_and_hierarchical_and_vmap():
    s = jaxmoe.get_preset("dts-nonlinear-router")
    t = s.truth_params()
    fit = t._replace(tau=t.tau + 0.05, eta={"a": t.eta["a"] + 0.1, "b": t.eta["b"]})
    e = parameter_errors(fit, t, linear_router=False)
    np.testing.assert_allclose(e.tau_error, 0.05, rtol=1e-4)
    np.testing.assert_allclose(e.expert_error, [0.1, 0.1], rtol=1e-4)
    with pytest.raises(JaxMoEInputError, match="linear_router"):
        parameter_errors(fit, t)

    h = jaxmoe.get_preset("hierarchical-ridge").truth_params()
    idx = jnp.array([0, 0, 1])  # split expert 0 of every group: over-fitted level-2 cells
    over = h._replace(beta0=h.beta0[:, idx].at[:, :2].add(jnp.log(jnp.array([0.5, 0.5]))),
                      beta1=h.beta1[:, idx].at[:, 1, 0].add(0.2),
                      eta=jax.tree_util.tree_map(lambda a: a[:, idx], h.eta))
    he = parameter_errors(over, h)
    np.testing.assert_array_equal(he.level1.cell_size, [1, 1])
    np.testing.assert_array_equal(he.level2.cell_size, [[2, 1], [2, 1]])
    assert float(he.overfit_error) > 0.05 and float(he.overfit_error) < 0.3
    assert float(he.exact_error) < 0.1
    assert np.all(np.isnan(np.asarray(he.level1.expert_error)))

    fitted, truth = _two_atom_example()
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, a * 1.01]), fitted)
    vm = jax.jit(jax.vmap(parameter_errors, in_axes=(0, None)))(batch, truth)
    one = parameter_errors(jax.tree_util.tree_map(lambda a: a[1], batch), truth)
    np.testing.assert_allclose(vm.overfit_error[1], one.overfit_error, rtol=1e-5)


def test_expert_sup_errors_linear_closed_form():
    """Linear experts on [-1, 1]: sup_x |da x + db| = |da| + |db| (attained at an end point of the grid)."""
    model = SoftmaxMoE("linear", k=2, d=1)
    fitted, truth = _two_atom_example()
    e = expert_sup_errors(model, fitted, truth)
    np.testing.assert_array_equal(e.cell_size, [1, 2])
    np.testing.assert_allclose(e.sup_error, [0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose([e.exact_error, e.overfit_error], [0.0, 0.1], atol=1e-6)
    shifted = fitted._replace(eta={"a": fitted.eta["a"].at[0, 0].add(0.2), "b": fitted.eta["b"].at[0].add(-0.05)})
    np.testing.assert_allclose(expert_sup_errors(model, shifted, truth).exact_error, 0.25, rtol=1e-5)

    hm = jaxmoe.get_preset("hierarchical-linear")
    ht = hm.truth_params()
    bumped = ht._replace(eta={"a": ht.eta["a"], "b": ht.eta["b"].at[1, 0].add(0.3)})
    he = expert_sup_errors(hm.model, bumped, ht)
    assert he.sup_error.shape == (2, 2)
    np.testing.assert_allclose(he.sup_error, [[0, 0], [0.3, 0]], atol=1e-5)

    model2 = SoftmaxMoE("tanh", k=2, d=2)
    t2 = SoftmaxParams(jnp.zeros(2), jnp.array([[1.0, 0.0], [0.0, 0.0]]),
                       {"a": jnp.array([[1.0, 1.0], [-1.0, 0.5]]), "b": jnp.zeros(2)})
    with pytest.raises(JaxMoEInputError, match="key"):
        expert_sup_errors(model2, t2, t2)
    e2 = expert_sup_errors(model2, t2, t2, key=jax.random.PRNGKey(0), num_points=64)
    np.testing.assert_allclose(e2.sup_error, [0.0, 0.0])


_mc = jax.jit(regression_l2_error, static_argnums=(1, 3, 5, 6))


def test_regression_l2_error_closed_form_quadrature_and_monte_carlo():
    """One linear expert: f = a x + b, so ||f_hat - f*||^2 = da^2 E[X^2] + db^2 (E[X] = 0)."""
    model = SoftmaxMoE("linear", k=1, d=1)
    truth = SoftmaxParams(jnp.zeros(1), jnp.zeros((1, 1)), {"a": jnp.array([[1.0]]), "b": jnp.array([0.5])})
    fit = truth._replace(eta={"a": jnp.array([[1.3]]), "b": jnp.array([0.4])})
    want = np.sqrt(0.09 / 3 + 0.01)
    np.testing.assert_allclose(regression_l2_error_quadrature(model, fit, model, truth), want, rtol=1e-6)
    mc = _mc(jax.random.PRNGKey(0), model, fit, model, truth, UniformInputs(), 200_000)
    np.testing.assert_allclose(mc, want, rtol=1e-2)
    assert float(regression_l2_error_quadrature(model, truth, model, truth)) == 0.0
    # a shifted uniform law and the truncated normal: E[X^2] from the quadrature's own weights
    wide = UniformInputs(0.0, 2.0)
    np.testing.assert_allclose(regression_l2_error_quadrature(model, fit, model, truth, wide),
                               np.sqrt(0.09 * 4 / 3 + 2 * 0.3 * -0.1 * 1.0 + 0.01), rtol=1e-6)
    tn = TruncatedNormalInputs(0.5)
    q = regression_l2_error_quadrature(model, fit, model, truth, tn)
    m = _mc(jax.random.PRNGKey(1), model, fit, model, truth, tn, 200_000)
    np.testing.assert_allclose(q, m, rtol=1e-2)


def test_regression_l2_error_on_a_preset_and_vmap():
    s = jaxmoe.get_preset("softmax-ridge")
    t = s.truth_params()
    fits = jax.tree_util.tree_map(lambda a: jnp.stack([a, a + 0.05, a - 0.1]), t)
    quad = jax.vmap(lambda p: regression_l2_error_quadrature(s.model, p, s.model, t))(fits)
    mc = jax.jit(jax.vmap(lambda p: regression_l2_error(jax.random.PRNGKey(2), s.model, p, s.model, t,
                                                        s.inputs, 100_000)))(fits)
    assert float(quad[0]) == 0.0 and float(mc[0]) == 0.0
    np.testing.assert_allclose(mc[1:], quad[1:], rtol=2e-2)
    assert 0 < float(quad[1]) < float(quad[2])


def test_regression_bad_input():
    m1, m2 = SoftmaxMoE("linear", k=1, d=1), SoftmaxMoE("linear", k=1, d=2)
    p1 = m1.zeros()
    with pytest.raises(JaxMoEInputError, match="model_hat.d"):
        regression_l2_error(jax.random.PRNGKey(0), m2, m2.zeros(), m1, p1)
    with pytest.raises(JaxMoEInputError, match="d = 1"):
        regression_l2_error_quadrature(m2, m2.zeros(), m2, m2.zeros())
    with pytest.raises(JaxMoEInputError, match="num_points"):
        regression_l2_error(jax.random.PRNGKey(0), m1, p1, m1, p1, num_points=0)
    fitted, truth = _two_atom_example()
    with pytest.raises(JaxMoEInputError, match="fitted.beta1"):
        parameter_errors(fitted._replace(beta1=jnp.zeros((3, 2))), truth)
    with pytest.raises(JaxMoEInputError, match="fitted"):
        parameter_errors(DenseToSparseParams(truth.beta0, truth.beta1, truth.eta, jnp.asarray(1.0)), truth)
