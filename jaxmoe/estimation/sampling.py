r"""What fit (n, r) of a rate study is made of, as functions of its key only: its data and its starts.

Fit (n, r) uses `key(n, r) = fold_in(fold_in(PRNGKey(seed), n), r)` (`fit_keys`), split into a data key and an
init key. Inputs are drawn as an `(L, d)` array and transposed, so the first n draws do not depend on the
padded length L (partitionable threefry): `draw_padded` gives the same fit the same data whatever bucket pads
it. Starts (`fit_starts`) depend on the init key only, not on n: start m is drawn from `fold_in(init key, m)`,
so it does not depend on the number of starts M either. With a noise schedule (`decay` > 0: the near-truth
noise is `noise * n ** -decay`, the oracle-initialised protocol of `FitOptions.init_noise_decay`) the starts
depend on n through that factor only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt32

from jaxmoe.estimation.initialization import near_truth_split, random_init
from jaxmoe.estimation.problem import least_squares_problem, ravel

__all__ = ["draw_padded", "fit_data", "fit_keys", "fit_starts"]


def draw_padded(key, setting, truth, n, length: int, model=None):
    """Data of one fit padded to `length`: x (d, L), y (L,), mask (L,); the first n draws do not depend on L.
    y = model(truth, x) + noise, `model` defaulting to `setting.model`."""
    model = setting.model if model is None else model
    k_x, k_eps = jax.random.split(key)
    dtype = jax.tree_util.tree_leaves(truth)[0].dtype
    # Draw (L, d) and transpose: row j is the j-th draw whatever L is.
    x = setting.inputs.sample(k_x, length, setting.d).T.astype(dtype)
    mask = (jnp.arange(length) < n).astype(dtype)
    y = model(truth, x) + setting.sigma * jax.random.normal(k_eps, (length,), dtype)
    x = x * mask  # padded inputs are 0 (inside the input box); their residuals are masked out
    return x, y * mask, mask


@jax.jit
def fit_keys(base: UInt32[Array, "*key"], ns: Int[Array, "F"], rs: Int[Array, "F"]) -> UInt32[Array, "F *key"]:
    """key(n, r) = fold_in(fold_in(base, n), r), for many fits at once."""
    return jax.vmap(lambda n, r: jax.random.fold_in(jax.random.fold_in(base, n), r))(ns, rs)


def fit_data(key, n, *, setting, length: int):
    """One fit's padded data (x, y, mask) and the MSE of the measure they come from (`setting.data_source()`:
    the truth, or a local alternative) on it (`vmap` it over a chunk's keys)."""
    model, truth = setting.data_source()
    k_data, _ = jax.random.split(key)
    x, y, mask = draw_padded(k_data, setting, truth, n, length, model)
    objective_truth = least_squares_problem(model, x, y, mask, gauge=False)[0].objective(ravel(truth)[0])
    return x, y, mask, objective_truth


def fit_starts(key, n=None, *, setting, model, init: str, restarts: int, noise: float, scale: float,
               decay: float = 0.0) -> tuple[Float[Array, "M p"], Float[Array, "p"]]:
    """One fit's M starts and the exact-split reference start: functions of the fit's key only (not of n).

    `init="near_truth"`: restart m splits the true atoms with offset m (which true atoms get the extra atoms;
    the assignment is cyclic, so offsets m and m mod k* split alike); `"mixed"`: one near-truth start, the
    others uniform on [-scale, scale]; `"random"`: all uniform. Starts of one kind are drawn under one `vmap`
    over their keys (k* near-truth groups at most), not one by one: the program stays small whatever M is (32
    starts traced one by one made a chunk program that took 105 s to compile and 9 s to load from the cache).
    """
    truth = setting.truth_params()
    if decay:  # a Python branch: without a schedule the program (and every fit) is what it was
        noise = noise * jnp.asarray(n, jax.tree_util.tree_leaves(truth)[0].dtype) ** -decay
    _, k_init = jax.random.split(key)
    keys = jax.vmap(lambda m: jax.random.fold_in(k_init, m))(jnp.arange(restarts))  # start m does not depend on M
    flat = lambda params: ravel(model.fix_gauge(params))[0]  # noqa: E731
    near = lambda k, offset: flat(near_truth_split(k, model, truth, setting.k_star, noise, offset=offset))  # noqa: E731
    uniform = jax.vmap(lambda k: flat(random_init(k, model, scale)))
    if init == "near_truth":
        starts = _by_offset_class(keys, near, setting.k_star)
    elif init == "mixed":
        starts = near(keys[0], 0)[None]
        starts = jnp.concatenate([starts, uniform(keys[1:])]) if restarts > 1 else starts
    else:
        starts = uniform(keys)
    exact = flat(near_truth_split(k_init, model, truth, setting.k_star, 0.0))
    return starts, exact


def _by_offset_class(keys, near, k_star: int):
    """Near-truth start m = `near(keys[m], m)`, computed per class m mod k* under one `vmap` each."""
    restarts = keys.shape[0]
    parts, order = [], []
    for c in range(min(k_star, restarts)):
        members = np.arange(c, restarts, k_star)
        parts.append(jax.vmap(lambda k, c=c: near(k, c))(keys[members]))
        order.append(members)
    starts = jnp.concatenate(parts)
    return starts[np.argsort(np.concatenate(order))]
