"""Where the per-sample cost of an LM iteration goes: the normal equations against their parts, one core.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 .venv/bin/python experiments/sample_cost.py \
        --out experiments/results/sample_cost.json

softmax-ridge over-fitted (k = 3, p = 12), `--lanes` fits vmapped, n = `--n`, float64, the engine's 512-sample
blocks; each variant is summed over the blocks of n in one `fori_loop` and timed as K = 16 dependent repeats
inside one jitted loop (best of 5, after a compile-and-warm-up run), reported as ns per sample (per lane):

- `normal_equations`: what an LM iteration evaluates, `LeastSquaresProblem.normal_equations` (r.r, J^T r,
  J^T J from one product of the augmented [J r] with itself);
- `jacobian`: the family's structured Jacobian and the residual alone (summed, no product);
- `model`: the regression function f_G alone (no derivatives);
- `rows`: a prototype with the Jacobian built as (p, n), the sample axis last, and the Gram as A A^T: the
  transposes of the (n, p) layout gone; not the engine's;
- `gram_float32`: the engine's layout with the augmented product in float32 (accumulated in float32): what
  mixed precision could at most give on this product; not the engine's.

Times are per sample per lane on one core (pin it: `taskset`, Eigen's threads off).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import jaxmoe  # noqa: E402
from jaxmoe.estimation.problem import least_squares_problem  # noqa: E402
from jaxmoe.estimation.sampling import fit_data, fit_starts  # noqa: E402
from jaxmoe.families import regression_jacobian  # noqa: E402
from jaxmoe.families.base import per_atom_jacobian, scale_leaves  # noqa: E402

K, BLOCK = 16, 512


def variants(model):
    """name -> fn(params, xb, yb, mb) on one block (module docstring)."""

    def augmented(params, xb, yb, mb, dtype=None):
        f, jac = regression_jacobian(model, params, xb)
        aug = jnp.concatenate([-mb[:, None] * jac, (mb * (yb - f))[:, None]], axis=1)
        if dtype is None:
            return aug.T @ aug
        aug = aug.astype(dtype)
        return jnp.dot(aug.T, aug, preferred_element_type=dtype).astype(jnp.float64)

    def jacobian(params, xb, yb, mb):
        f, jac = regression_jacobian(model, params, xb)
        return jnp.sum(jac, 0) + jnp.sum(mb * (yb - f))

    def rows(params, xb, yb, mb):  # the flat family's Jacobian (families/flat.py) with the sample axis last
        n, tau = xb.shape[1], model.temperature(params)
        g, dg = per_atom_jacobian(model.gate_router.fn, params.beta1, xb)
        h, dh = per_atom_jacobian(model.expert.fn, params.eta, xb)
        w = model.gates((g + params.beta0[:, None]) / tau)
        f = jnp.sum(w * h, axis=0)
        c = model.logit_coefficient(w, h, f) / tau
        leaves = jax.tree_util.tree_leaves(scale_leaves(c, dg)) + jax.tree_util.tree_leaves(scale_leaves(w, dh))
        jt = jnp.concatenate([c] + [jnp.moveaxis(a, 1, -1).reshape(-1, n) for a in leaves], axis=0)
        aug = jnp.concatenate([-(mb[None, :] * jt), (mb * (yb - f))[None, :]], axis=0)
        return aug @ aug.T

    return dict(
        jacobian=jacobian,
        model=lambda params, xb, yb, mb: jnp.sum(mb * (yb - model(params, xb))),
        rows=rows,
        gram_float32=functools.partial(augmented, dtype=jnp.float32),
    )


def blockwise(fn, n):
    """fn summed over the n // BLOCK whole blocks of one fit's data."""
    def total(params, x, y, m):
        def body(i, acc):
            s = i * BLOCK
            part = fn(params, jax.lax.dynamic_slice_in_dim(x, s, BLOCK, axis=1),
                      jax.lax.dynamic_slice_in_dim(y, s, BLOCK), jax.lax.dynamic_slice_in_dim(m, s, BLOCK))
            return jax.tree_util.tree_map(jnp.add, acc, part)
        shape = jax.eval_shape(fn, params, x[:, :BLOCK], y[:BLOCK], m[:BLOCK])
        zero = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shape)
        return jax.lax.fori_loop(0, n // BLOCK, body, zero)
    return total


def ns_per_sample(per_fit, args, count):
    """Best of 5 of K dependent repeats of `per_fit` vmapped over the lanes, in ns per sample per lane."""
    x, y, m, theta = args

    def repeat(x, y, m, theta):
        def step(_, acc):
            out = jax.vmap(per_fit)(x, y, m, theta + 0.0 * acc)
            return acc + 0.0 * sum(jnp.sum(a) for a in jax.tree_util.tree_leaves(out))
        return jax.lax.fori_loop(0, K, step, jnp.zeros(()))

    fn = jax.jit(repeat)
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best / (K * count) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n = args.n - args.n % BLOCK  # whole blocks: every variant evaluates the same samples
    setting = jaxmoe.get_preset("softmax-ridge")
    model = setting.fitted_model()
    keys = jax.random.split(jax.random.PRNGKey(0), args.lanes)
    data_of = functools.partial(fit_data, setting=setting, length=n)
    x, y, mask, _ = jax.jit(jax.vmap(data_of, in_axes=(0, None)))(keys, n)
    starts, _ = jax.jit(jax.vmap(functools.partial(fit_starts, setting=setting, model=model, init="near_truth",
                                                   restarts=1, noise=0.1, scale=3.0)))(keys)
    theta = starts[:, 0]
    _, unravel = least_squares_problem(model, x[0], y[0], mask[0])
    data = (x, y, mask, theta)
    count = args.lanes * n
    rows = {"normal_equations": ns_per_sample(
        lambda x1, y1, m1, t: least_squares_problem(model, x1, y1, m1, block_size=BLOCK)[0].normal_equations(t),
        data, count)}
    for name, fn in variants(model).items():
        total = blockwise(fn, n)
        rows[name] = ns_per_sample(lambda x1, y1, m1, t, total=total: total(unravel(t), x1, y1, m1), data, count)
    for name, ns in rows.items():
        print(f"{name:18s} {ns:6.1f} ns per sample (one core, {args.lanes} lanes, n = {n})", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(command="experiments/sample_cost.py " + f"--n {args.n} --lanes {args.lanes}", n=n,
                           lanes=args.lanes, loadavg=os.getloadavg(), ns_per_sample=rows), f, indent=1)


if __name__ == "__main__":
    main()
