r"""Initialisation strategies for a fit with k atoms (k2 per group for the hierarchical family), batched by `vmap`.

- `near_truth_split` (the literature's, THEORY.md §7): true atom j is split into the fitted atoms of its
  cell. Convention: fitted atoms 0..k*-1 start at true atoms 0..k*-1 and the extra atoms are assigned
  cyclically to true atoms 0, 1, ...; a cell of m atoms divides the gate weight,
  $\beta_{0i} = \beta^*_{0j} - \tau \log m$ (so $\sum_{i \in A_j} e^{\beta_{0i}/\tau} = e^{\beta^*_{0j}/\tau}$),
  then every coordinate gets an independent $N(0, \text{noise}^2)$ perturbation ($\tau$ multiplicatively) and
  the point is projected onto $\Theta$. With `noise=0` the start is the truth itself, re-parametrised.
- `random_init`: every gate and expert coordinate uniform on $[-s, s] \cap \Theta$ (`scale` s, default 3: a
  uniform draw over the whole box $|\cdot| \le 10$ starts most fits at step-function gates), and
  $\log \tau$ uniform on $[\log 0.5, \log 2]$.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoe.models.moe import DenseToSparseParams, HierarchicalMoE, HierarchicalParams


def split_assignment(k_star: int, k: int, offset: int = 0) -> np.ndarray:
    """True atom of each fitted atom: [0, ..., k*-1, o, o+1, ...] (mod k*) with o = `offset` (length k)."""
    return np.array([i if i < k_star else (i - k_star + offset) % k_star for i in range(k)])


def _perturb(key, tree, noise):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    new = [leaf + noise * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, new)


def _split_level(key, beta0, beta1, eta, assign, tau, noise, axis):
    counts = np.bincount(assign)[assign]
    take = lambda a: jnp.take(a, jnp.asarray(assign), axis=axis)
    k0, k1, k2 = jax.random.split(key, 3)
    b0 = take(beta0) - tau * jnp.log(jnp.asarray(counts, beta0.dtype))
    return (b0 + noise * jax.random.normal(k0, b0.shape, b0.dtype),
            _perturb(k1, jax.tree_util.tree_map(take, beta1), noise),
            _perturb(k2, jax.tree_util.tree_map(take, eta), noise))


def near_truth_split(key, model, truth, k_star: int, noise: float | jax.Array = 0.1, offset: int = 0):
    """Near-truth start for `model` (the fitted model, k >= k* atoms) from the true parameters `truth`;
    `offset` picks which true atoms receive the extra atoms (restart m uses offset m)."""
    if isinstance(model, HierarchicalMoE):
        assign = split_assignment(k_star, model.k2, offset)
        k_lvl1, k_lvl2 = jax.random.split(key)
        ka, kb = jax.random.split(k_lvl1)
        kappa = truth.kappa + noise * jax.random.normal(ka, truth.kappa.shape, truth.kappa.dtype)
        omega = truth.omega + noise * jax.random.normal(kb, truth.omega.shape, truth.omega.dtype)
        beta0, beta1, eta = _split_level(k_lvl2, truth.beta0, truth.beta1, truth.eta, assign, 1.0, noise, axis=1)
        return model.project(HierarchicalParams(kappa, omega, beta0, beta1, eta))
    assign = split_assignment(k_star, model.k, offset)
    tau = truth.tau if isinstance(truth, DenseToSparseParams) else 1.0
    k_split, k_tau = jax.random.split(key)
    beta0, beta1, eta = _split_level(k_split, truth.beta0, truth.beta1, truth.eta, assign, tau, noise, axis=0)
    if isinstance(truth, DenseToSparseParams):
        tau = truth.tau * jnp.exp(noise * jax.random.normal(k_tau, (), truth.tau.dtype))
        return model.project(DenseToSparseParams(beta0, beta1, eta, tau))
    return model.project(type(truth)(beta0, beta1, eta))


def random_init(key, model, scale: float = 3.0, dtype=None):
    """Uniform start in $[-s, s] \\cap \\Theta$ for every coordinate (log-uniform tau in [0.5, 2])."""
    template = model.zeros()
    if dtype is not None:
        template = jax.tree_util.tree_map(lambda a: a.astype(dtype), template)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    keys = jax.random.split(key, len(leaves))
    new = [jax.random.uniform(k, leaf.shape, leaf.dtype, -scale, scale) for k, leaf in zip(keys, leaves)]
    params = jax.tree_util.tree_unflatten(treedef, new)
    if isinstance(params, DenseToSparseParams):
        log_tau = jax.random.uniform(keys[-1], (), template.tau.dtype, np.log(0.5), np.log(2.0))
        params = params._replace(tau=jnp.exp(log_tau))
    return model.project(params)
