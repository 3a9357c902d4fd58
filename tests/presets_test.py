"""All six Table 1 presets evaluate, differentiate, vmap and jit in float32 and float64."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe


@pytest.mark.parametrize("name", jaxmoe.PRESET_NAMES)
def test_preset_transforms(name, precision):
    setting = jaxmoe.get_preset(name)
    model, truth = setting.model, setting.truth_params()
    dtype = jnp.float64 if precision else jnp.float32
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(truth))
    x = setting.inputs.sample(jax.random.PRNGKey(0), setting.d, 64)
    f = jax.jit(model)(truth, x)
    chex.assert_shape(f, (64,))
    chex.assert_tree_all_finite(f)
    assert f.dtype == dtype
    np.testing.assert_allclose(f, model(truth, x), rtol=1e-6)
    g = jax.grad(lambda p: jnp.mean(model(p, x) ** 2))(truth)
    chex.assert_trees_all_equal_shapes(g, truth)
    chex.assert_tree_all_finite(g)
    jac = jax.jacfwd(lambda p: model(p, x[:, :5]))(truth)
    chex.assert_tree_all_finite(jac)
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), truth)
    chex.assert_shape(jax.vmap(model, in_axes=(0, None))(batch, x), (2, 64))
    fitted = setting.fitted_model()
    chex.assert_shape(fitted(fitted.zeros(), x), (64,))


@pytest.mark.parametrize("name", jaxmoe.PRESET_NAMES)
def test_preset_truth_is_well_separated(name):
    """Every atom owns part of the input range (gate weight > 0.7 somewhere on a fine grid), and a ridge
    expert's pre-activation stays in [-3, 3] wherever its gate weight is > 0.3 (THEORY.md §7)."""
    setting = jaxmoe.get_preset(name)
    x = jnp.linspace(-1, 1, 2001)[None]
    model, truth = setting.model, setting.truth_params()
    if isinstance(model, jaxmoe.HierarchicalMoE):
        w1 = jax.nn.softmax(model.group_logits(truth, x), axis=0)
        w2 = jax.nn.softmax(model.expert_logits(truth, x), axis=1)
        weights = (w1[:, None] * w2).reshape(-1, x.shape[1])
    else:
        weights = jax.nn.softmax(model.logits(truth, x), axis=0)
    assert float(jnp.min(jnp.max(weights, axis=1))) > 0.7
    if model.expert.name == "sigmoid":
        a = truth.eta["a"].reshape(weights.shape[0], -1)
        b = truth.eta["b"].reshape(-1)
        pre = a @ x + b[:, None]
        active = weights > 0.3
        assert float(jnp.max(jnp.abs(jnp.where(active, pre, 0.0)))) <= 3.0
    assert setting.why and setting.row and setting.theory


def test_unknown_preset():
    with pytest.raises(jaxmoe.JaxMoEInputError, match="preset='nope'"):
        jaxmoe.get_preset("nope")
