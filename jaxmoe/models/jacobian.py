r"""The Jacobian of $f_G(x)$ in the flat parameter vector, assembled from per-atom blocks.

For a flat family $f = \sum_i w_i h_i$ with $w = \mathrm{softmax}(\ell)$, $\ell_i = (g(x, \beta_{1i}) + \beta_{0i})/\tau$:
$\partial f/\partial \ell_i = w_i (h_i - f)$ and $\partial f/\partial h_i = w_i$, and atom i's logit and expert
depend on atom i's parameters only. So the $n \times p$ Jacobian needs per-sample derivatives of one
router and one expert in one atom's parameters ($p/k$ tangents each), instead of $p$ tangent passes through
the whole model (`jax.jacfwd`), each of which evaluates all k atoms and the softmax: about k times less work.
Columns are in `jax.flatten_util.ravel_pytree(params)` order. The hierarchical family has the same
structure one level up: with group weights $W_{i_1}$, inner mixtures $m_{i_1} = \sum_{i_2} V_{i_2|i_1} h_{i_1 i_2}$,
$\partial f/\partial \ell_{i_1} = W_{i_1}(m_{i_1} - f)$ and $\partial f/\partial \ell_{i_2|i_1} = W_{i_1} V_{i_2|i_1}(h_{i_1 i_2} - m_{i_1})$.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxmoe.models.gates import linear_router
from jaxmoe.models.moe import DenseToSparseMoE, DenseToSparseParams, HierarchicalMoE, SoftmaxMoE


def _per_atom_jacobian(fn, atoms, x):
    """value (k, n) and d value / d atom params: leaves (k, n, *leaf shape), for a pointwise fn(x, theta_i)."""
    one = lambda xi, theta: (fn(xi, theta), jax.jacfwd(fn, argnums=1)(xi, theta))
    return jax.vmap(jax.vmap(one, in_axes=(1, None)), in_axes=(None, 0))(x, atoms)


def _columns(tree, n):
    """(k, n, *s) leaves -> list of (n, k * prod(s)) blocks in ravel order (atom index slowest)."""
    return [jnp.moveaxis(leaf, 1, 0).reshape(n, -1) for leaf in jax.tree_util.tree_leaves(tree)]


def regression_jacobian(model, params, x: Float[Array, "d n"]) -> tuple[Float[Array, "n"], Float[Array, "n p"]]:
    """$f_G(x)$ and its Jacobian in the flat parameters (columns in `ravel_pytree(params)` order)."""
    if isinstance(model, HierarchicalMoE):
        return _hierarchical_jacobian(model, params, x)
    if not isinstance(model, (SoftmaxMoE, DenseToSparseMoE)):
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        fn = lambda t: model(unravel(t), x)
        return fn(flat), jax.jacfwd(fn)(flat)
    n = x.shape[1]
    router = model.router if isinstance(model, DenseToSparseMoE) else linear_router()
    tau = params.tau if isinstance(params, DenseToSparseParams) else 1.0
    g, dg = _per_atom_jacobian(router.fn, params.beta1, x)  # (k, n), leaves (k, n, ...)
    h, dh = _per_atom_jacobian(model.expert.fn, params.eta, x)
    logits = (g + params.beta0[:, None]) / tau
    w = jax.nn.softmax(logits, axis=0)
    f = jnp.sum(w * h, axis=0)
    c_logit = w * (h - f) / tau  # df / d(g_i + beta0_i)
    scale = lambda coef, tree: jax.tree_util.tree_map(lambda a: a * coef.reshape(coef.shape + (1,) * (a.ndim - 2)), tree)
    blocks = [c_logit.T]  # beta0
    blocks += _columns(scale(c_logit, dg), n)  # beta1 (router parameters)
    blocks += _columns(scale(w, dh), n)  # eta
    if isinstance(params, DenseToSparseParams):
        blocks.append(jnp.sum(c_logit * -(g + params.beta0[:, None]) / tau, axis=0)[:, None])  # tau
    return f, jnp.concatenate(blocks, axis=1)


def _hierarchical_jacobian(model, params, x):
    n = x.shape[1]
    k1, k2 = model.k1, model.k2
    flat_eta = jax.tree_util.tree_map(lambda a: a.reshape((k1 * k2,) + a.shape[2:]), params.eta)
    h, dh = _per_atom_jacobian(model.expert.fn, flat_eta, x)  # (k1 k2, n), leaves (k1 k2, n, ...)
    h = h.reshape(k1, k2, n)
    w1 = jax.nn.softmax(model.group_logits(params, x), axis=0)  # (k1, n)
    v = jax.nn.softmax(model.expert_logits(params, x), axis=1)  # (k1, k2, n)
    inner = jnp.sum(v * h, axis=1)  # (k1, n)
    f = jnp.sum(w1 * inner, axis=0)
    c1 = w1 * (inner - f)  # df / d group logit
    c2 = w1[:, None] * v * (h - inner[:, None])  # df / d expert logit
    weight = (w1[:, None] * v).reshape(k1 * k2, n)  # df / dh
    scale = lambda coef, tree: jax.tree_util.tree_map(lambda a: a * coef.reshape(coef.shape + (1,) * (a.ndim - 2)), tree)
    blocks = [c1.T,  # kappa
              jnp.moveaxis(c1[:, None, :] * x[None], -1, 0).reshape(n, -1),  # omega (k1, d)
              jnp.moveaxis(c2, -1, 0).reshape(n, -1),  # beta0 (k1, k2)
              jnp.moveaxis(c2[:, :, None, :] * x[None, None], -1, 0).reshape(n, -1)]  # beta1 (k1, k2, d)
    blocks += _columns(scale(weight, dh), n)  # eta
    return f, jnp.concatenate(blocks, axis=1)
