"""Voronoi losses: hand-computed values, translation invariance, zero at the truth, vmap, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe.validation import JaxMoEInputError
from jaxmoe.losses import (
    batched_loss,
    normalize_translation,
    voronoi_cells,
    voronoi_loss_d1,
    voronoi_loss_d2r,
    voronoi_loss_d4,
    voronoi_loss_hierarchical,
    voronoi_loss_temperature,
)
from jaxmoe.families import DenseToSparseParams, HierarchicalParams, SoftmaxParams

# One loss per preset row (the r = 2 version for the hierarchical-linear row, eq. 29).
LOSS_OF = {
    "softmax-ridge": lambda f, t: voronoi_loss_d1(f, t),
    "softmax-linear": lambda f, t: voronoi_loss_d2r(f, t, 1.5),
    "dts-linear-router": lambda f, t: voronoi_loss_temperature(f, t, 2.0),
    "dts-nonlinear-router": lambda f, t: voronoi_loss_d4(f, t),
    "hierarchical-ridge": lambda f, t: voronoi_loss_hierarchical(f, t),
    "hierarchical-linear": lambda f, t: voronoi_loss_hierarchical(f, t, 2.0),
}


def _two_atom_example(weights=(1.0, 0.5, 0.5), slopes=(1.1, 0.1, -0.3)):
    """Truth: 2 atoms (d = 1, eta = (a, b)); fit: atom 0 alone near true atom 0, atoms 1, 2 near true atom 1."""
    truth = SoftmaxParams(jnp.zeros(2), jnp.array([[1.0], [0.0]]),
                          {"a": jnp.array([[1.0], [-1.0]]), "b": jnp.zeros(2)})
    fitted = SoftmaxParams(jnp.log(jnp.array(weights)), jnp.array(slopes)[:, None],
                           {"a": jnp.array([[1.0], [-1.0], [-1.0]]), "b": jnp.array([0.0, 0.0, 0.1])})
    return fitted, truth


def test_d1_hand_computed():
    # Mass 1 + 0.5 + 0.5 = 2 = true mass; softmax-weighted mean slope 0.5*1.1 + 0.25*0.1 - 0.25*0.3 = 0.5 = true.
    # So the normalisation is the identity. Cell 0 (exact): 1 * (0.1 + 0); cell 1 (over-fitted):
    # 0.5 * 0.1^2 + 0.5 * (0.3^2 + 0.1^2) = 0.055; masses exact.
    fitted, truth = _two_atom_example()
    for translation in ("normalize", "none"):
        np.testing.assert_allclose(voronoi_loss_d1(fitted, truth, translation=translation), 0.155, rtol=1e-6)
    # D2r: r = 1: 0.1 + 0.5 * 0.1 + 0.5 * (0.3 + 0.1) = 0.35; r = 2: 0.01 + 0.005 + 0.05 = 0.065.
    np.testing.assert_allclose(voronoi_loss_d2r(fitted, truth, 1), 0.35, rtol=1e-6)
    np.testing.assert_allclose(voronoi_loss_d2r(fitted, truth, 2.0), 0.065, rtol=1e-6)
    cells = voronoi_cells(fitted, truth)
    np.testing.assert_array_equal(cells.assignment, [0, 1, 1])
    np.testing.assert_array_equal(cells.sizes, [1, 2])


def test_d1_hand_computed_untranslated_masses():
    # Weights (1, 0.5, 0.4): mass term |0.9 - 1| = 0.1; cell terms 0.1 + 0.5 * 0.01 + 0.4 * (0.09 + 0.01).
    fitted, truth = _two_atom_example(weights=(1.0, 0.5, 0.4))
    np.testing.assert_allclose(voronoi_loss_d1(fitted, truth, translation="none"), 0.245, rtol=1e-6)
    assert not np.isclose(voronoi_loss_d1(fitted, truth), 0.245)  # the normalisation moved it


def test_tie_goes_to_lowest_index():
    truth = SoftmaxParams(jnp.zeros(2), jnp.array([[1.0], [-1.0]]), {"a": jnp.zeros((2, 1)), "b": jnp.zeros(2)})
    fitted = SoftmaxParams(jnp.zeros(1), jnp.array([[0.0]]), {"a": jnp.zeros((1, 1)), "b": jnp.zeros(1)})
    cells = voronoi_cells(fitted, truth, translation="none")
    np.testing.assert_array_equal(cells.assignment, [0])
    np.testing.assert_array_equal(cells.sizes, [1, 0])


def test_equal_to_d1_and_d2r_at_unit_temperature():
    """D4 with tau = tau* = 1 is D1, and eq. (16) is D2r (+ |tau - tau*|^r = 0)."""
    fitted, truth = _two_atom_example(weights=(1.0, 0.5, 0.4))
    to_dts = lambda p: DenseToSparseParams(p.beta0, p.beta1, p.eta, jnp.asarray(1.0))
    for tr in ("none", "normalize"):
        np.testing.assert_allclose(voronoi_loss_d4(to_dts(fitted), to_dts(truth), translation="none"),
                                   voronoi_loss_d1(fitted, truth, translation="none"), rtol=1e-6)
        np.testing.assert_allclose(voronoi_loss_temperature(to_dts(fitted), to_dts(truth), 1.5, translation=tr),
                                   voronoi_loss_d2r(fitted, truth, 1.5, translation=tr), rtol=1e-6)
    # A temperature error adds |dtau|^r once (eq. 16) with weights exp(beta0 / tau).
    hot = to_dts(fitted)._replace(tau=jnp.asarray(1.2))
    same_weights = hot._replace(beta0=hot.beta0 * 1.2)
    np.testing.assert_allclose(
        voronoi_loss_temperature(same_weights, to_dts(truth), 2.0, translation="none"),
        voronoi_loss_d2r(fitted, truth, 2.0, translation="none") + 0.2 ** 2, rtol=1e-5)


def test_hierarchical_reduces_to_d1_per_group():
    """With the level-1 gate exact, D_H = sum_i1 exp(kappa_i1) * D1(group i1, true group i1)."""
    s = jaxmoe.get_preset("hierarchical-ridge")
    t = s.truth_params()
    fitted = t._replace(beta1=t.beta1.at[0, 0, 0].add(0.3), eta={"a": t.eta["a"].at[1, 1, 0].add(-0.2), "b": t.eta["b"]})
    d1 = jax.jit(voronoi_loss_d1, static_argnames="translation")
    group = lambda p, g: SoftmaxParams(p.beta0[g], p.beta1[g], {k: v[g] for k, v in p.eta.items()})
    want = sum(np.exp(float(t.kappa[g])) * d1(group(fitted, g), group(t, g), translation="none")
               for g in range(2))
    dh = jax.jit(voronoi_loss_hierarchical, static_argnames="translation")
    np.testing.assert_allclose(dh(fitted, t, translation="none"), want, rtol=1e-5)
    # normalised: level 1 is already normalised, each group's level 2 normalised as D1 does it
    want = sum(np.exp(float(t.kappa[g])) * d1(group(fitted, g), group(t, g)) for g in range(2))
    np.testing.assert_allclose(dh(fitted, t), want, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- presets


def _split_first_atom(params):
    """An over-fitted (k* + 1) representation of `params`: atom 0 split with weights 0.4 / 0.6."""
    if isinstance(params, HierarchicalParams):
        k2 = params.beta0.shape[1]
        idx = jnp.array([0] + list(range(k2)))
        take = lambda a: a[:, idx]
        split = jnp.log(jnp.array([0.4, 0.6]))
        b0 = take(params.beta0).at[:, :2].add(split)
        return params._replace(beta0=b0, beta1=take(params.beta1), eta=jax.tree_util.tree_map(take, params.eta))
    k = params.beta0.shape[0]
    idx = jnp.array([0] + list(range(k)))
    take = lambda a: a[idx]
    scale = params.tau if isinstance(params, DenseToSparseParams) else 1.0
    b0 = take(params.beta0).at[:2].add(scale * jnp.log(jnp.array([0.4, 0.6])))
    return params._replace(beta0=b0, beta1=jax.tree_util.tree_map(take, params.beta1),
                           eta=jax.tree_util.tree_map(take, params.eta))


def _perturb(params, key, scale):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [leaf + scale * jax.random.normal(k, jnp.shape(leaf), jnp.result_type(leaf)) for k, leaf in zip(keys, leaves)])


def _translate(params, key, linear=True):
    """A random translation of the gate(s): the symmetry the losses must ignore."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    if isinstance(params, HierarchicalParams):
        kk1, d = params.omega.shape
        return params._replace(
            omega=params.omega + 2 * jax.random.normal(k1, (d,)), kappa=params.kappa + 2 * jax.random.normal(k2),
            beta1=params.beta1 + 2 * jax.random.normal(k3, (kk1, 1, d)),
            beta0=params.beta0 + 2 * jax.random.normal(k4, (kk1, 1)))
    params = params._replace(beta0=params.beta0 + 2 * jax.random.normal(k2))
    if linear:
        params = params._replace(beta1=params.beta1 + 2 * jax.random.normal(k1, params.beta1.shape[1:]))
    return params


@pytest.mark.parametrize("name", list(LOSS_OF))
def test_zero_at_truth_positive_when_perturbed_and_translation_invariant(name):
    with jax.enable_x64(True):
        s = jaxmoe.get_preset(name)
        t = s.truth_params()
        loss = jax.jit(LOSS_OF[name])
        linear = not (s.model.family == "dense_to_sparse" and not s.model.router.is_linear)
        over = _split_first_atom(t)
        key = jax.random.PRNGKey(0)
        # zero at the truth, at its exact over-fitted representation, and at any translate of either
        assert float(loss(t, t)) == 0.0
        for exact in (t, over):
            assert float(loss(exact, t)) < 1e-12  # exactly 0 at t; rounding in the split weights
            for k in jax.random.split(key, 2):
                assert float(loss(_translate(exact, k, linear), t)) < 1e-10
        # positive for a perturbed over-fitted estimate, and the same after random translations
        fit = _perturb(over, jax.random.PRNGKey(1), 0.05)
        base = float(loss(fit, t))
        assert base > 1e-4
        for k in jax.random.split(jax.random.PRNGKey(2), 3):
            np.testing.assert_allclose(float(loss(_translate(fit, k, linear), t)), base, rtol=1e-9)
        # the untranslated loss does change under translation (the normalisation is doing the work)
        moved = _translate(fit, jax.random.PRNGKey(3), linear)
        kw = {"translation": "none"}
        raw_base = {"softmax-ridge": lambda f: voronoi_loss_d1(f, t, **kw),
                    "softmax-linear": lambda f: voronoi_loss_d2r(f, t, 1.5, **kw),
                    "dts-linear-router": lambda f: voronoi_loss_temperature(f, t, 2.0, **kw),
                    "dts-nonlinear-router": lambda f: voronoi_loss_d4(f, t, **kw),
                    "hierarchical-ridge": lambda f: voronoi_loss_hierarchical(f, t, **kw),
                    "hierarchical-linear": lambda f: voronoi_loss_hierarchical(f, t, 2.0, **kw)}[name]
        raw_base = jax.jit(raw_base)
        assert abs(float(raw_base(moved)) - float(raw_base(fit))) > 1e-6


def test_normalize_translation_is_idempotent_and_exact_on_translates():
    with jax.enable_x64(True):
        s = jaxmoe.get_preset("softmax-ridge")
        t = s.truth_params()
        fit = _perturb(_split_first_atom(t), jax.random.PRNGKey(4), 0.1)
        a = normalize_translation(fit, t)
        b = normalize_translation(_translate(fit, jax.random.PRNGKey(5)), t)
        c = normalize_translation(a, t)
        for x, y in ((a, b), (a, c)):
            jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-10), x, y)
        np.testing.assert_allclose(jnp.sum(jnp.exp(a.beta0)), jnp.sum(jnp.exp(t.beta0)), rtol=1e-12)
        tr = normalize_translation(_translate(t, jax.random.PRNGKey(6)), t)
        jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-10), tr, t)


# ---------------------------------------------------------------------------------------------- vmap


@pytest.mark.parametrize("name", ["softmax-ridge", "dts-nonlinear-router", "hierarchical-linear"])
def test_vmap_matches_loop(name):
    s = jaxmoe.get_preset(name)
    t = s.truth_params()
    over = _split_first_atom(t)
    fits = [_perturb(over, k, 0.1) for k in jax.random.split(jax.random.PRNGKey(7), 3)]
    batch = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *fits)
    one = jax.jit(LOSS_OF[name])
    loop = np.array([one(f, t) for f in fits])
    np.testing.assert_allclose(jax.jit(jax.vmap(LOSS_OF[name], in_axes=(0, None)))(batch, t), loop, rtol=1e-5)
    if name == "softmax-ridge":  # the batched helper (one more compilation: only once)
        np.testing.assert_allclose(batched_loss("d1", batch, s.truth), loop, rtol=1e-5)


def test_loss_is_differentiable_at_the_truth():
    t = jaxmoe.get_preset("softmax-ridge").truth_params()
    over = _split_first_atom(t)
    g = jax.jit(jax.grad(voronoi_loss_d1))(over, t)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(g))


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input():
    fitted, truth = _two_atom_example()
    wrong_d = fitted._replace(beta1=jnp.zeros((3, 2)))
    with pytest.raises(JaxMoEInputError, match="fitted.beta1"):
        voronoi_loss_d1(wrong_d, truth)
    wrong_eta = fitted._replace(eta={"a": fitted.eta["a"], "c": fitted.eta["b"]})
    with pytest.raises(JaxMoEInputError, match="fitted.eta"):
        voronoi_loss_d1(wrong_eta, truth)
    wrong_a = fitted._replace(eta={"a": jnp.zeros((3, 2)), "b": fitted.eta["b"]})
    with pytest.raises(JaxMoEInputError, match="per-atom shape"):
        voronoi_loss_d1(wrong_a, truth)
    wrong_k = fitted._replace(beta0=jnp.zeros(4))
    with pytest.raises(JaxMoEInputError, match="leading atom axes"):
        voronoi_loss_d1(wrong_k, truth)
    for r in (0.5, 0, float("nan"), "two"):
        with pytest.raises(JaxMoEInputError, match="r="):
            voronoi_loss_d2r(fitted, truth, r)
    with pytest.raises(JaxMoEInputError, match="translation"):
        voronoi_loss_d1(fitted, truth, translation="min")
    dts = DenseToSparseParams(truth.beta0, truth.beta1, truth.eta, jnp.asarray(1.0))
    with pytest.raises(JaxMoEInputError, match="fitted"):
        voronoi_loss_temperature(fitted, dts)
    with pytest.raises(JaxMoEInputError, match="truth"):
        voronoi_loss_d1(fitted, dts)
