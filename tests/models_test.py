"""Known values, invariances, derivatives and vmap behaviour of the three MoE families."""

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe import (
    DenseToSparseMoE,
    DenseToSparseParams,
    HierarchicalMoE,
    HierarchicalParams,
    SoftmaxMoE,
    SoftmaxParams,
)


def _random_params(model, key, scale=1.0):
    leaves, tree = jax.tree_util.tree_flatten(model.zeros())
    keys = jax.random.split(key, len(leaves))
    new = [scale * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
    params = jax.tree_util.tree_unflatten(tree, new)
    if isinstance(params, DenseToSparseParams):
        params = params._replace(tau=jnp.asarray(0.7))
    return params


def _grid(d, n=7, key=0):
    return jax.random.uniform(jax.random.PRNGKey(key), (d, n), minval=-1, maxval=1)


EXPERTS = ["linear", "sigmoid", "tanh", "gelu", "relu", "polynomial2", "ffn-tanh"]


@pytest.mark.parametrize("expert", EXPERTS)
def test_one_expert_is_the_expert(expert, precision):
    model = SoftmaxMoE(expert, k=1, d=2)
    params = _random_params(model, jax.random.PRNGKey(1))
    x = _grid(2)
    h = jax.vmap(model.expert.fn, in_axes=(1, None))(x, jax.tree_util.tree_map(lambda a: a[0], params.eta))
    np.testing.assert_allclose(model(params, x), h, rtol=1e-6 if precision else 1e-5, atol=1e-6)


def test_closed_form_two_linear_experts():
    model = SoftmaxMoE("linear", k=2, d=1)
    p = model.make_params(beta0=[0.3, 0.0], beta1=[[2.0], [0.0]], eta={"a": [[1.0], [-1.0]], "b": [0.5, 2.0]})
    x = jnp.array([[-0.5, 0.0, 0.8]])
    w = 1 / (1 + np.exp(-(2 * x[0] + 0.3)))
    want = w * (x[0] + 0.5) + (1 - w) * (-x[0] + 2.0)
    np.testing.assert_allclose(model(p, x), want, rtol=1e-6)


def test_temperature_limits():
    model = DenseToSparseMoE("sigmoid", k=3, d=1)
    p = _random_params(model, jax.random.PRNGKey(2))
    x = _grid(1, 11)
    h = model.experts(p, x)
    raw = jax.vmap(jax.vmap(model.router.fn, in_axes=(1, None)), in_axes=(None, 0))(x, p.beta1) + p.beta0[:, None]
    argmax = h[jnp.argmax(raw, axis=0), jnp.arange(x.shape[1])]
    np.testing.assert_allclose(model(p._replace(tau=jnp.asarray(1e-4)), x), argmax, atol=1e-5)
    np.testing.assert_allclose(model(p._replace(tau=jnp.asarray(1e6)), x), h.mean(axis=0), atol=1e-5)


def test_softmax_translation_invariance(precision):
    model = SoftmaxMoE("gelu", k=3, d=2)
    p = _random_params(model, jax.random.PRNGKey(3))
    x = _grid(2)
    shifted = p._replace(beta0=p.beta0 + 1.7, beta1=p.beta1 + jnp.array([0.4, -2.0]))
    np.testing.assert_allclose(model(shifted, x), model(p, x), rtol=1e-5, atol=1e-6)
    # ... and a change that is not a common translation does change f.
    moved = p._replace(beta0=p.beta0.at[0].add(1.0))
    assert np.max(np.abs(model(moved, x) - model(p, x))) > 1e-3


def test_dense_to_sparse_linear_router_translation_invariance():
    model = DenseToSparseMoE("tanh", k=3, d=2, router="linear")
    p = _random_params(model, jax.random.PRNGKey(4))
    x = _grid(2)
    shifted = p._replace(beta0=p.beta0 - 3.0, beta1=p.beta1 + jnp.array([1.0, 0.5]))
    np.testing.assert_allclose(model(shifted, x), model(p, x), rtol=1e-5, atol=1e-6)


def test_hierarchical_translation_invariance_both_levels():
    model = HierarchicalMoE("sigmoid", k1=2, k2=3, d=2)
    p = _random_params(model, jax.random.PRNGKey(5))
    x = _grid(2)
    level1 = p._replace(kappa=p.kappa + 2.0, omega=p.omega + jnp.array([0.3, -0.3]))
    # Level 2 translations are per group: a different shift in each group.
    level2 = p._replace(beta0=p.beta0 + jnp.array([[1.0], [-2.0]]),
                        beta1=p.beta1 + jnp.array([[[0.5, 0.1]], [[-1.0, 2.0]]]))
    np.testing.assert_allclose(model(level1, x), model(p, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(level2, x), model(p, x), rtol=1e-5, atol=1e-6)


def test_hierarchical_one_group_equals_flat(precision):
    flat = SoftmaxMoE("tanh", k=3, d=2)
    hier = HierarchicalMoE("tanh", k1=1, k2=3, d=2)
    p = _random_params(flat, jax.random.PRNGKey(6))
    hp = HierarchicalParams(jnp.zeros(1), jnp.zeros((1, 2)), p.beta0[None], p.beta1[None],
                            jax.tree_util.tree_map(lambda a: a[None], p.eta))
    x = _grid(2)
    np.testing.assert_allclose(hier(hp, x), flat(p, x), rtol=1e-6, atol=1e-6)


def test_hierarchical_with_one_expert_per_group_is_flat_over_groups():
    flat = SoftmaxMoE("sigmoid", k=3, d=1)
    hier = HierarchicalMoE("sigmoid", k1=3, k2=1, d=1)
    p = _random_params(flat, jax.random.PRNGKey(7))
    hp = HierarchicalParams(p.beta0, p.beta1, jnp.zeros((3, 1)), jnp.zeros((3, 1, 1)),
                            jax.tree_util.tree_map(lambda a: a[:, None], p.eta))
    x = _grid(1)
    np.testing.assert_allclose(hier(hp, x), flat(p, x), rtol=1e-6, atol=1e-6)


def test_softmax_dense_to_sparse_tau_one_linear_router_equals_softmax():
    sm = SoftmaxMoE("gelu", k=3, d=2)
    dts = DenseToSparseMoE("gelu", k=3, d=2, router="linear")
    p = _random_params(sm, jax.random.PRNGKey(8))
    x = _grid(2)
    np.testing.assert_allclose(dts(DenseToSparseParams(p.beta0, p.beta1, p.eta, jnp.asarray(1.0)), x), sm(p, x), rtol=1e-6)


def test_large_logits_do_not_overflow(precision):
    model = SoftmaxMoE("sigmoid", k=2, d=1)
    p = model.make_params(beta0=[5000.0, 0.0], beta1=[[1e4], [0.0]], eta={"a": [[1.0], [1.0]], "b": [0.0, 3.0]})
    x = jnp.array([[-1.0, 0.0, 1.0]])
    f = model(p, x)
    chex.assert_tree_all_finite(f)
    np.testing.assert_allclose(f, jax.nn.sigmoid(jnp.array([-1.0 + 3.0, 0.0, 1.0])), rtol=1e-5)
    chex.assert_tree_all_finite(jax.grad(lambda q: model(q, x).sum())(p))
    gates = jaxmoe.softmax_gate(jnp.array([[1e30, -1e30], [0.0, 0.0]]))
    np.testing.assert_allclose(gates, [[1.0, 0.0], [0.0, 1.0]])


def _models():
    return [
        SoftmaxMoE("sigmoid", k=3, d=2),
        SoftmaxMoE("ffn-gelu", k=2, d=2),
        DenseToSparseMoE("tanh", k=3, d=2, router="linear"),
        DenseToSparseMoE("sigmoid", k=2, d=2, router="mlp-tanh"),
        HierarchicalMoE("gelu", k1=2, k2=2, d=2),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.family}-{m.expert.name}")
def test_grad_matches_finite_differences(model):
    with jax.enable_x64(True):
        p = _random_params(model, jax.random.PRNGKey(9))
        x = _grid(2)
        loss = lambda q: jnp.sum(model(q, x) ** 2)
        g = jax.grad(loss)(p)
        flat, unravel = jax.flatten_util.ravel_pytree(p)
        gflat, _ = jax.flatten_util.ravel_pytree(g)
        eps = 1e-6
        fd = np.array([(loss(unravel(flat.at[i].add(eps))) - loss(unravel(flat.at[i].add(-eps)))) / (2 * eps)
                       for i in range(flat.size)])
        np.testing.assert_allclose(gflat, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.family}-{m.expert.name}")
def test_vmap_matches_loop_over_params_and_data(model):
    keys = jax.random.split(jax.random.PRNGKey(10), 4)
    batch = jax.vmap(lambda k: _random_params(model, k))(keys)
    xs = jax.random.uniform(jax.random.PRNGKey(11), (4, 2, 9), minval=-1, maxval=1)
    got_params = jax.vmap(model, in_axes=(0, None))(batch, xs[0])
    got_data = jax.vmap(model, in_axes=(None, 0))(jax.tree_util.tree_map(lambda a: a[0], batch), xs)
    for i in range(4):
        p_i = jax.tree_util.tree_map(lambda a: a[i], batch)
        np.testing.assert_allclose(got_params[i], model(p_i, xs[0]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got_data[i], model(jax.tree_util.tree_map(lambda a: a[0], batch), xs[i]), rtol=1e-6, atol=1e-7)


def test_user_defined_expert():
    sine = jaxmoe.Expert("sine", lambda x, eta: eta["a"] * jnp.sin(eta["b"] * x[0]), lambda d: {"a": (), "b": ()})
    model = SoftmaxMoE(sine, k=1, d=1)
    p = model.make_params(beta0=[0.0], beta1=[[0.0]], eta={"a": [2.0], "b": [3.0]})
    x = jnp.array([[0.1, 0.5]])
    np.testing.assert_allclose(model(p, x), 2 * jnp.sin(3 * x[0]), rtol=1e-6)


def test_projection_onto_box():
    model = SoftmaxMoE("sigmoid", k=2, d=1, box=jaxmoe.ParameterBox(gate=5.0, expert=3.0))
    p = model.make_params(beta0=[7.0, -1.0], beta1=[[-9.0], [0.0]], eta={"a": [[4.0], [1.0]], "b": [-0.5, -8.0]})
    q = model.project(p)
    np.testing.assert_allclose(q.beta0, [5.0, -1.0])
    np.testing.assert_allclose(q.beta1, [[-5.0], [0.0]])
    np.testing.assert_allclose(q.eta["a"], [[3.0], [1.0]])
    np.testing.assert_allclose(q.eta["b"], [-0.5, -3.0])
    assert model.in_box(q) and not model.in_box(p)
    dts = DenseToSparseMoE("sigmoid", k=2, d=1, box=jaxmoe.ParameterBox(tau=(0.2, 5.0)))
    z = dts.zeros()
    assert float(dts.project(z).tau) == pytest.approx(0.2)


@pytest.mark.parametrize("name", jaxmoe.PRESET_NAMES)
def test_structured_jacobian_matches_jacfwd(name):
    from jaxmoe.families import regression_jacobian

    with jax.enable_x64(True):
        setting = jaxmoe.get_preset(name)
        model = setting.fitted_model()
        params = jaxmoe.random_init(jax.random.PRNGKey(1), model)
        x = jax.random.uniform(jax.random.PRNGKey(2), (setting.d, 40), minval=-1, maxval=1)
        f, jac = regression_jacobian(model, params, x)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        np.testing.assert_allclose(jac, jax.jacfwd(lambda t: model(unravel(t), x))(flat), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f, model(params, x), rtol=1e-12)


@pytest.mark.parametrize("model", [DenseToSparseMoE("ffn-gelu", k=3, d=2, router="mlp-tanh"),
                                   HierarchicalMoE("ffn-tanh", k1=2, k2=3, d=2)], ids=["dts-mlp", "hier-d2"])
def test_structured_jacobian_mlp_router_ffn_expert_d2(model):
    from jaxmoe.families import regression_jacobian

    with jax.enable_x64(True):
        params = _random_params(model, jax.random.PRNGKey(3))
        x = _grid(2, 30)
        _, jac = regression_jacobian(model, params, x)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        np.testing.assert_allclose(jac, jax.jacfwd(lambda t: model(unravel(t), x))(flat), rtol=1e-10, atol=1e-12)
