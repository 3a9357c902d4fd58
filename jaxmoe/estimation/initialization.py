r"""Initialisation strategies for a fit with k atoms (k2 per group for the hierarchical family), batched by `vmap`.

Each family defines its own starts (`jaxmoe.families`); these are the entry points estimation uses.

- `near_truth_split` (the literature's, THEORY.md §7): true atom j is split into the fitted atoms of its
  cell. Convention: fitted atoms 0..k*-1 start at true atoms 0..k*-1 and the extra atoms are assigned
  cyclically to true atoms `offset`, `offset` + 1, ...; a cell of m atoms divides the gate weight,
  $\beta_{0i} = \beta^*_{0j} - \tau \log m$ (so $\sum_{i \in A_j} e^{\beta_{0i}/\tau} = e^{\beta^*_{0j}/\tau}$),
  then every coordinate gets an independent $N(0, \text{noise}^2)$ perturbation ($\tau$ multiplicatively) and
  the point is projected onto $\Theta$. With `noise=0` the start is the truth itself, re-parametrised (for
  softmax-type gates; the family's docstring says where a split is only approximate).
- `random_init`: every gate and expert coordinate uniform on $[-s, s] \cap \Theta$ (`scale` s, default 3: a
  uniform draw over the whole box $|\cdot| \le 10$ starts most fits at step-function gates), and
  $\log \tau$ uniform on $[\log 0.5, \log 2]$ where the family has a temperature.
"""

from __future__ import annotations

import jax

from jaxmoe.families.base import split_assignment

__all__ = ["near_truth_split", "random_init", "split_assignment"]


def near_truth_split(key, model, truth, k_star: int, noise: float | jax.Array = 0.1, offset: int = 0):
    """Near-truth start for `model` (the fitted model, k >= k* atoms) from the true parameters `truth`;
    `offset` picks which true atoms receive the extra atoms (restart m uses offset m)."""
    return model.near_truth_split(key, truth, k_star, noise, offset)


def random_init(key, model, scale: float = 3.0, dtype=None):
    """Uniform start in $[-s, s] \\cap \\Theta$ for every coordinate (log-uniform tau in [0.5, 2])."""
    return model.random_start(key, scale, dtype)
