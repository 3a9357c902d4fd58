"""Solvers for the flat over-fitted landscapes (issue 13 item 1): why LM hits its iteration limit, and what stops it.

    # one trajectory file per preset (on the 2-core CPU pin to one core); flat_landscapes.md has every run:
    export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false OMP_NUM_THREADS=1
    taskset -c 1 .venv/bin/python experiments/flat_landscapes.py run --preset hierarchical-linear \
        --sizes 100,1000,10000 --replicates 8 --pool 8 --variants "default:1000;floor:300;geodesic:300"
    # the tables (every config, every stopping rule) from trajectory files, a per-job diagnosis, a check
    # against fit_curve:
    taskset -c 1 .venv/bin/python experiments/flat_landscapes.py analyse --restarts 4 \
        experiments/results/flat_landscapes/hierarchical-linear.npz --out experiments/results/flat_landscapes/summary.json
    taskset -c 1 .venv/bin/python experiments/flat_landscapes.py diagnose \
        experiments/results/flat_landscapes/hierarchical-linear.npz --at 300
    taskset -c 1 .venv/bin/python experiments/flat_landscapes.py crosscheck \
        experiments/results/flat_landscapes/softmax-linear.npz --restarts 4

`run` fits every (n, replicate) of the over-fitted preset (k = k* + 1) from `--pool` near-truth starts
(fit_curve's `fit_keys`/`fit_data`/`fit_starts`, seed 0, noise 0.3: the same data and starts `fit_curve` gives
those fits) plus the exact split of the truth (the reference start), with each solver variant up to its
budget, and records every iteration: objective, damping, projected gradient, accepted or not, and the
decrease the LM model predicts for the next step. Variants (`name:budget`):

- `default`, `marquardt`, `exact`: jaxmoe's own `levenberg_marquardt.update` (LMConfig scaling/hessian);
- `floor`: a copy of that update with D = max(diag(J^T J), 1e-3 x its running max) (Marquardt's with a floor);
- `geodesic`: the same copy with Transtrum-Sethna geodesic acceleration (step v + a/2, a from the second
  directional derivative of the residuals, accepted only if 2 ||a||_D / ||v||_D <= 0.75);
- `varpro`: variable projection (Golub-Pereyra, Kaufman's step) over the coordinates the model is affine in
  (found by autodiff: `linear_coordinates`), re-solved exactly in the box at every candidate (`box_qp_step`);
  two residual passes per iteration (`varpro_update`).

`analyse` evaluates, from the trajectories, a config = (variant, budget, stopping rule) exactly as if the
solver had stopped there: a fit is the best of its first `--restarts` starts (the lowest objective, its
status and iterations kept, as fit_curve does), so the `--pool` starts (twice as many) and every variant's
final point and reference give the **best known** minimum. Stopping rules besides jaxmoe's (gtol/ftol/stall):

- `window(c, m)`: stop once the objective fell by less than c * L / n over the last m iterations (L the
  current objective, ~sigma^2 at the minimum: sigma^2 estimated by the objective itself);
- `pred(c)`: stop once the LM-predicted decrease of the next step is below c * L / n, on an accepted step.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import jaxmoe  # noqa: E402
from jaxmoe.estimation import levenberg_marquardt as lm  # noqa: E402
from jaxmoe.estimation.options import default_starts  # noqa: E402
from jaxmoe.estimation.problem import least_squares_problem, projected_gradient_norm, ravel  # noqa: E402
from jaxmoe.estimation.sampling import fit_data, fit_keys, fit_starts  # noqa: E402
from jaxmoe.estimation.status import (CONVERGED_FTOL, CONVERGED_GTOL, CONVERGED_STALL, MAX_ITER,  # noqa: E402
                                      NONFINITE, RUNNING, STATUS_NAMES)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "results", "flat_landscapes")
NOISE_RULE = 99  # status code of a stop by a noise-level rule (analysis only)
FLOOR = 1e-3
GEODESIC_ALPHA = 0.75


# ----------------------------------------------------------------------------------------------- solver variants
def variant_update(state: lm.LMState, problem, config: lm.LMConfig, kind: str) -> lm.LMState:
    """jaxmoe's LM update (levenberg_marquardt.update, copied), with `kind` 'floor' (floored Marquardt scaling)
    or 'geodesic' (geodesic acceleration). Everything else (active set, Nielsen damping, rules) is unchanged."""
    p = state.theta.shape[0]
    eps = 1e-12 * (problem.upper - problem.lower)
    at_lower = (state.theta <= problem.lower + eps) & (state.grad > 0)
    at_upper = (state.theta >= problem.upper - eps) & (state.grad < 0)
    free = problem.free & ~at_lower & ~at_upper
    tiny = jnp.finfo(state.theta.dtype).tiny ** 0.5
    if kind == "floor":  # state.scale holds the running max; damp by the current diagonal, floored by it
        scale = jnp.maximum(jnp.maximum(jnp.abs(jnp.diag(state.gram)), FLOOR * state.scale), tiny)
    else:
        scale = jnp.maximum(state.scale, tiny)
    gram = jnp.where(free[:, None] & free[None, :], state.gram, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    a = gram + state.damping * jnp.diag(scale)
    chol = jax.scipy.linalg.cho_factor(a + jnp.finfo(a.dtype).eps * jnp.trace(a) / p * jnp.eye(p, dtype=a.dtype))
    delta = jax.scipy.linalg.cho_solve(chol, -jnp.where(free, state.grad, 0.0))
    delta = jnp.where(state.fresh, 0.0, delta)
    ok_geo = jnp.asarray(True)
    if kind == "geodesic":
        # r'' along delta (forward over forward), then a = -(J^T J + lambda D)^-1 J^T r''.
        first = lambda t: jax.jvp(problem.residuals, (t,), (delta,))[1]
        rvv = jax.jvp(first, (state.theta,), (delta,))[1]
        jt_rvv = jax.vjp(problem.residuals, state.theta)[1](rvv)[0]
        acc = jax.scipy.linalg.cho_solve(chol, -jnp.where(free, jt_rvv, 0.0))
        norm = lambda v: jnp.sqrt(jnp.sum(scale * v * v))
        ok_geo = 2.0 * norm(acc) <= GEODESIC_ALPHA * norm(delta) + 1e-300
        delta = jnp.where(state.fresh, 0.0, delta + 0.5 * acc)
    candidate = problem.project(state.theta + delta)
    step = candidate - state.theta
    f_new, grad_new, gram_new = lm.linearise(problem, candidate, config)
    predicted = -(2.0 * jnp.dot(step, state.grad) + step @ state.gram @ step)
    actual = state.objective - f_new
    rho = actual / jnp.where(predicted > 0, predicted, jnp.inf)
    accept = jnp.isfinite(f_new) & (actual > 0) & (ok_geo | state.fresh)
    theta = jnp.where(accept, candidate, state.theta)
    objective = jnp.where(accept, f_new, state.objective)
    gram = jnp.where(accept, gram_new, state.gram)
    grad = jnp.where(accept, grad_new, state.grad)
    if kind == "floor" or config.scaling == "more":
        new_scale = jnp.where(accept, jnp.maximum(state.scale, jnp.abs(jnp.diag(gram_new))), state.scale)
    else:
        new_scale = jnp.where(accept, jnp.abs(jnp.diag(gram_new)), state.scale)
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.clip(rho, 0.0, 1.0) - 1.0) ** 3)
    damping = jnp.where(accept, state.damping * shrink, state.damping * state.nu)
    nu = jnp.where(accept, 2.0, state.nu * 2.0)
    damping = jnp.where(state.fresh, state.damping, damping)
    nu = jnp.where(state.fresh, state.nu, nu)
    pgrad = projected_gradient_norm(theta, 2.0 * grad, problem)
    rel_decrease = actual / jnp.maximum(state.objective, jnp.finfo(theta.dtype).tiny)
    status = jnp.where(pgrad <= config.gtol, CONVERGED_GTOL, RUNNING)
    status = jnp.where((status == RUNNING) & accept & ~state.fresh & (rel_decrease <= config.ftol), CONVERGED_FTOL,
                       status)
    status = jnp.where((status == RUNNING) & (damping >= config.max_damping), CONVERGED_STALL, status)
    status = jnp.where(jnp.isfinite(objective) & jnp.all(jnp.isfinite(theta)), status, NONFINITE)
    return lm.LMState(theta, objective, gram, grad, new_scale, jnp.minimum(damping, config.max_damping), nu,
                      state.iteration + jnp.where(state.fresh, 0, 1).astype(jnp.int32), status.astype(jnp.int32),
                      jnp.asarray(False))


# ------------------------------------------------------------------------------------ variable projection
def linear_coordinates(model, unravel, lower, upper, x, key) -> np.ndarray:
    """Coordinates of theta the model is jointly affine in, by autodiff: candidates have a zero second
    derivative d2f/dtheta_j^2, and candidates with a non-zero cross term are dropped greedily until the block's
    Hessian vanishes. Tested at two random points of the box and a random combination of the samples (zero
    there with probability one only if identically zero). Pinned coordinates are never linear."""
    free = np.asarray(lower < upper)
    k1, k2, k3 = jax.random.split(key, 3)
    w = jax.random.normal(k3, (x.shape[-1],))
    hess = []
    for k in (k1, k2):
        u = jax.random.uniform(k, lower.shape, dtype=lower.dtype)
        theta = jnp.where(lower < upper, lower + u * (upper - lower), lower)
        hess.append(np.abs(np.asarray(jax.hessian(lambda t: jnp.dot(w, model(unravel(t), x)))(theta))))
    hess = np.maximum(*hess)
    tol = 1e-12 * max(hess.max(), 1.0)
    linear = free & (np.diag(hess) <= tol)
    while True:
        block = np.where(linear[:, None] & linear[None, :], hess, 0.0)
        worst = np.argmax((block > tol).sum(axis=1))
        if not (block > tol).any():
            return linear
        linear[worst] = False


def box_qp_step(c, g, lo, hi, newton: int = 20):
    """min over gamma of q(gamma) = 2 g.gamma + gamma' C gamma with lo <= gamma <= hi (C s.p.s.d., small, often
    ill-conditioned: an atom with a near-empty cell leaves its expert nearly undetermined).

    Projected Newton with an arc search (Bertsekas): from the better of 0 and the clipped unconstrained
    minimiser, Newton on the coordinates not held by a face their gradient pushes against, then the best of
    clip(gamma + t d) over t = 1, 1/2, ..., 2^-15. Monotone in q and feasible throughout (lo <= 0 <= hi)."""
    q = c.shape[0]
    c = c + jnp.finfo(c.dtype).eps * jnp.trace(c) / q * jnp.eye(q, dtype=c.dtype)
    model = lambda v: 2.0 * jnp.dot(g, v) + v @ c @ v
    clipped = jnp.clip(jnp.linalg.solve(c, -g), lo, hi)
    gamma = jnp.where(model(clipped) <= 0.0, clipped, jnp.zeros_like(g))
    ts = 0.5 ** jnp.arange(16, dtype=c.dtype)

    def newton_step(_, gamma):
        grad = g + c @ gamma
        held = ((gamma <= lo) & (grad > 0)) | ((gamma >= hi) & (grad < 0))
        reduced = jnp.where(~held[:, None] & ~held[None, :], c, 0.0) + jnp.diag(jnp.where(held, 1.0, 0.0))
        d = jnp.linalg.solve(reduced, -jnp.where(held, 0.0, grad))
        trials = jnp.clip(gamma[None, :] + ts[:, None] * d[None, :], lo, hi)
        values = jax.vmap(model)(trials)
        best = jnp.argmin(values)
        return jnp.where(values[best] <= model(gamma), trials[best], gamma)

    return jax.lax.fori_loop(0, newton, newton_step, gamma)


def varpro_update(state: lm.LMState, problem, config: lm.LMConfig, linear, kaufman: bool = True) -> lm.LMState:
    """Variable projection (Golub-Pereyra with Kaufman's Jacobian) on jaxmoe's LM. theta = (nonlinear a,
    linear c), r(a, c) affine in c. The state sits at c = c*(a), the box-constrained minimiser over c.
    Step: the damped Gauss-Newton system with the damping on the a-block only, i.e. the Schur complement
    A - B C^-1 B' of the Gram (Kaufman's reduced Gram, since J_c' r = 0 at an interior c*). Candidate a' =
    P(a + delta_a); pass 1 at (a', c) gives the exact quadratic in c, so c*(a') is a small box QP; pass 2 at
    (a', c*(a')) gives the objective, gradient and Gram the next step needs. Two passes per iteration (under
    vmap both always run). Acceptance, Nielsen damping and the stopping rules are those of `lm.update`.

    `kaufman=False` (variant `lm_then_c`): jaxmoe's LM step on every coordinate (damped, predicted decrease and
    all), then c re-solved from that candidate: each step is never worse than the LM step from the same state."""
    if not kaufman:
        return _lm_then_c(state, problem, config, linear)
    p = state.theta.shape[0]
    eps = 1e-12 * (problem.upper - problem.lower)
    at_lower = (state.theta <= problem.lower + eps) & (state.grad > 0)
    at_upper = (state.theta >= problem.upper - eps) & (state.grad < 0)
    free = problem.free & ~at_lower & ~at_upper
    # The step's model holds c on its active faces too (else it predicts moves c cannot make); the candidate's
    # c is then re-solved over the whole box, so a face can be left.
    free_c = problem.free & linear
    tiny = jnp.finfo(state.theta.dtype).tiny ** 0.5
    scale = jnp.where(linear, 0.0, jnp.maximum(state.scale, tiny))
    gram = jnp.where(free[:, None] & free[None, :], state.gram, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    a = gram + state.damping * jnp.diag(scale)
    chol = jax.scipy.linalg.cho_factor(a + jnp.finfo(a.dtype).eps * jnp.trace(a) / p * jnp.eye(p, dtype=a.dtype))
    # Kaufman's step: the reduced gradient is J_a' r at c*(a) (J_c' r = 0 there). Zeroing the c-part of the
    # right-hand side matters: C is often ill-conditioned (a near-empty cell), so a round-off J_c' r would be
    # amplified by C^-1 into the a-step.
    rhs = jnp.where(free & ~linear, state.grad, 0.0)
    # The first iteration only re-solves c at the start (the state sits at c*(a) from then on).
    delta = jnp.where(state.fresh | (state.iteration == 0), 0.0, jax.scipy.linalg.cho_solve(chol, -rhs))
    base = problem.project(state.theta + jnp.where(linear, 0.0, delta))  # c kept: the QP starts from it
    # rho against the reduced (Schur) model's decrease, i.e. the full model's at the unprojected step, whose
    # c-part is -C^-1 B' delta_a: positive by construction (predicting with c held is not: delta_a
    # overshoots that model, and rho = 0 doubled the damping on accepted steps).
    predicted = -(2.0 * jnp.dot(delta, rhs) + delta @ gram @ delta)
    return _resolve_c_and_accept(state, problem, config, base, free_c, predicted)


def _lm_then_c(state: lm.LMState, problem, config: lm.LMConfig, linear) -> lm.LMState:
    """`lm.update`'s candidate with its c re-solved exactly in the box, accepted on the re-solved objective."""
    p = state.theta.shape[0]
    eps = 1e-12 * (problem.upper - problem.lower)
    free = problem.free & ~((state.theta <= problem.lower + eps) & (state.grad > 0)) \
        & ~((state.theta >= problem.upper - eps) & (state.grad < 0))
    scale = jnp.maximum(state.scale, jnp.finfo(state.theta.dtype).tiny ** 0.5)
    gram = jnp.where(free[:, None] & free[None, :], state.gram, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    a = gram + state.damping * jnp.diag(scale)
    chol = jax.scipy.linalg.cho_factor(a + jnp.finfo(a.dtype).eps * jnp.trace(a) / p * jnp.eye(p, dtype=a.dtype))
    delta = jax.scipy.linalg.cho_solve(chol, -jnp.where(free, state.grad, 0.0))
    base = problem.project(state.theta + delta)
    step = base - state.theta
    predicted = -(2.0 * jnp.dot(step, state.grad) + step @ state.gram @ step)
    return _resolve_c_and_accept(state, problem, config, base, problem.free & linear, predicted)


def _resolve_c_and_accept(state: lm.LMState, problem, config: lm.LMConfig, base, free_c, predicted) -> lm.LMState:
    """Pass 1 at `base`, c re-solved exactly in the box from there (`box_qp_step`), pass 2 at the result; then
    `lm.update`'s acceptance, Nielsen damping (rho against `predicted`) and stopping rules."""
    f1, g1, gram1 = lm.linearise(problem, base, config)
    gamma = box_qp_step(jnp.where(free_c[:, None] & free_c[None, :], gram1, 0.0) + jnp.diag(jnp.where(free_c, 0.0, 1.0)),
                        jnp.where(free_c, g1, 0.0), jnp.where(free_c, problem.lower - base, 0.0),
                        jnp.where(free_c, problem.upper - base, 0.0))
    candidate = problem.project(base + gamma)
    f_new, grad_new, gram_new = lm.linearise(problem, candidate, config)
    actual = state.objective - f_new
    rho = actual / jnp.where(predicted > 0, predicted, jnp.inf)
    accept = jnp.isfinite(f_new) & (actual > 0)
    theta = jnp.where(accept, candidate, state.theta)
    objective = jnp.where(accept, f_new, state.objective)
    grad = jnp.where(accept, grad_new, state.grad)
    new_scale = jnp.where(accept, jnp.maximum(state.scale, jnp.abs(jnp.diag(gram_new))), state.scale)
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.clip(rho, 0.0, 1.0) - 1.0) ** 3)
    damping = jnp.where(accept, state.damping * shrink, state.damping * state.nu)
    nu = jnp.where(accept, 2.0, state.nu * 2.0)
    pgrad = projected_gradient_norm(theta, 2.0 * grad, problem)
    rel_decrease = actual / jnp.maximum(state.objective, jnp.finfo(theta.dtype).tiny)
    status = jnp.where(pgrad <= config.gtol, CONVERGED_GTOL, RUNNING)
    status = jnp.where((status == RUNNING) & accept & (rel_decrease <= config.ftol), CONVERGED_FTOL, status)
    status = jnp.where((status == RUNNING) & (damping >= config.max_damping), CONVERGED_STALL, status)
    status = jnp.where(jnp.isfinite(objective) & jnp.all(jnp.isfinite(theta)), status, NONFINITE)
    return lm.LMState(theta, objective, jnp.where(accept, gram_new, state.gram), grad, new_scale,
                      jnp.minimum(damping, config.max_damping), nu, state.iteration + 1, status.astype(jnp.int32),
                      jnp.asarray(False))


VARIANTS = {  # name -> (LMConfig overrides, update kind: None = jaxmoe's own update)
    "default": ({}, None),
    "marquardt": ({"scaling": "marquardt"}, None),
    "exact": ({"hessian": "exact"}, None),
    "floor": ({}, "floor"),
    "geodesic": ({}, "geodesic"),
    "varpro": ({}, "varpro"),  # two passes per iteration
    "lm_then_c": ({}, "lm_then_c"),  # two passes per iteration
}


# residual + normal-equation passes per iteration (the cost unit); geodesic and exact add derivative passes of
# another kind (measured in wall time in flat_landscapes.md), so they have none here
PASSES_PER_ITERATION = {"default": 1, "marquardt": 1, "floor": 1, "varpro": 2, "lm_then_c": 2}


def next_predicted(state: lm.LMState, problem) -> jax.Array:
    """Decrease the LM model predicts for the step from `state` at its damping (free coordinates only)."""
    p = state.theta.shape[0]
    eps = 1e-12 * (problem.upper - problem.lower)
    free = problem.free & ~((state.theta <= problem.lower + eps) & (state.grad > 0)) \
        & ~((state.theta >= problem.upper - eps) & (state.grad < 0))
    gram = jnp.where(free[:, None] & free[None, :], state.gram, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    scale = jnp.maximum(state.scale, jnp.finfo(state.theta.dtype).tiny ** 0.5)
    a = gram + state.damping * jnp.diag(scale)
    a = a + jnp.finfo(a.dtype).eps * jnp.trace(a) / p * jnp.eye(p, dtype=a.dtype)
    g = jnp.where(free, state.grad, 0.0)
    delta = -jnp.linalg.solve(a, g)
    return -(2.0 * jnp.dot(delta, g) + delta @ gram @ delta)


def trajectories(setting, model, n: int, keys, starts, variant: str, budget: int):
    """Every job's per-iteration record, (J, budget + 1) arrays, and its final status / iteration (J,)."""
    overrides, kind = VARIANTS[variant]
    config = lm.LMConfig(max_iter=budget, **overrides)
    if kind in ("varpro", "lm_then_c"):
        x0 = fit_data(keys[0], n, setting=setting, length=n)[0]
        (lo, unravel), (hi, _) = (ravel(b) for b in model.bounds(True))
        linear = jnp.asarray(linear_coordinates(model, unravel, lo, hi, x0, jax.random.PRNGKey(1)))
        print(f"varpro: {int(linear.sum())} linear coordinates of {linear.size}", flush=True)
        update = lambda s, pr: varpro_update(s, pr, config, linear, kaufman=kind == "varpro")
    elif kind is None:
        update = lambda s, pr: lm.update(s, pr, config)
    else:
        update = lambda s, pr: variant_update(s, pr, config, kind)

    def one(key, theta0):
        x, y, mask, _ = fit_data(key, n, setting=setting, length=n)
        problem = least_squares_problem(model, x, y, mask)[0]
        state = lm.init(theta0, problem, config)
        nan = jnp.full((budget + 1,), jnp.nan)
        rec = dict(objective=nan.at[0].set(state.objective), damping=nan.at[0].set(state.damping),
                   pgrad=nan.at[0].set(projected_gradient_norm(state.theta, 2.0 * state.grad, problem)),
                   predicted=nan.at[0].set(next_predicted(state, problem)),
                   accepted=jnp.zeros((budget + 1,), bool))

        def body(carry):
            st, rec = carry
            new = update(st, problem)
            i = new.iteration
            rec = dict(objective=rec["objective"].at[i].set(new.objective),
                       damping=rec["damping"].at[i].set(new.damping),
                       pgrad=rec["pgrad"].at[i].set(projected_gradient_norm(new.theta, 2.0 * new.grad, problem)),
                       predicted=rec["predicted"].at[i].set(next_predicted(new, problem)),
                       accepted=rec["accepted"].at[i].set(new.objective < st.objective))
            return new, rec

        st, rec = jax.lax.while_loop(lambda c: (c[0].status == RUNNING) & (c[0].iteration < budget), body,
                                     (state, rec))
        return rec, jnp.where(st.status == RUNNING, MAX_ITER, st.status), st.iteration, st.theta

    return jax.jit(jax.vmap(one))(keys, starts)


def cmd_run(args):
    setting = jaxmoe.get_preset(args.preset)
    k = setting.k_star + 1
    model = setting.fitted_model(k)
    restarts_default, noise = default_starts(True)
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [(v.split(":")[0], int(v.split(":")[1])) for v in args.variants.split(";")]
    out = dict(preset=args.preset, k=k, k_star=setting.k_star, sigma=setting.sigma, sizes=sizes,
               replicates=args.replicates, pool=args.pool, init_noise=noise, variants=variants,
               device=str(jax.devices()[0]), jax=jax.__version__)
    arrays = {}
    for n in sizes:
        keys = fit_keys(jax.random.PRNGKey(0), jnp.full((args.replicates,), n), jnp.arange(args.replicates))
        starts, exact = jax.jit(jax.vmap(lambda key: fit_starts(
            key, setting=setting, model=model, init="near_truth", restarts=args.pool, noise=noise, scale=3.0)))(keys)
        # jobs: replicate-major pool starts, then one reference (exact split) per replicate
        job_keys = jnp.concatenate([jnp.repeat(keys, args.pool, axis=0), keys])
        job_starts = jnp.concatenate([starts.reshape(-1, starts.shape[-1]), exact])
        for variant, budget in variants:
            t0 = time.perf_counter()
            rec, status, iters, theta = jax.block_until_ready(
                trajectories(setting, model, n, job_keys, job_starts, variant, budget))
            wall = time.perf_counter() - t0
            tag = f"{variant}_n{n}"
            for name, value in rec.items():
                arrays[f"{tag}_{name}"] = np.asarray(value)
            arrays[f"{tag}_status"], arrays[f"{tag}_iterations"] = np.asarray(status), np.asarray(iters)
            arrays[f"{tag}_theta"] = np.asarray(theta)
            out[f"{tag}_wall"] = wall
            counts = {STATUS_NAMES[int(s)]: int(np.sum(status == s)) for s in np.unique(np.asarray(status))}
            print(f"{args.preset} n={n} {variant}:{budget}: {wall:.1f} s (compile included), "
                  f"jobs {len(status)}: {counts}, median it {int(np.median(iters))}", flush=True)
            path = os.path.join(args.out_dir, f"{args.preset}{args.tag}.npz")
            np.savez_compressed(path, meta=json.dumps(out), **arrays)  # saved after each: a crash loses nothing


# ------------------------------------------------------------------------------------------------------ analysis
def stop_point(rec, status, iters, budget, rule):
    """Per job: (stop iteration, status, objective) of the config = trajectory cut at `budget` and `rule`."""
    obj = rec["objective"]
    J, B1 = obj.shape
    # forward-fill past each job's natural stop (the solver is frozen there)
    idx = np.arange(B1)[None, :]
    filled = np.where(idx <= iters[:, None], obj, obj[np.arange(J), iters][:, None])
    t_rule = np.full(J, 10**9)
    if rule is not None:
        kind, c, m = rule
        n_times = rec["n"]
        threshold = c * filled / n_times  # c * L / n
        if kind == "window":
            drop = np.full_like(filled, np.inf)
            drop[:, m:] = filled[:, :-m] - filled[:, m:]
            hit = (drop < threshold) & (idx >= m)
        else:  # pred: on an accepted step
            hit = (rec["predicted"] < threshold) & rec["accepted"] & (idx >= 1)
        hit &= idx <= iters[:, None]
        t_rule = np.where(hit.any(axis=1), hit.argmax(axis=1), 10**9)
    natural = np.where(status == MAX_ITER, 10**9, iters)
    t = np.minimum(np.minimum(natural, t_rule), budget)
    t = np.minimum(t, iters)  # a MAX_ITER job recorded to its own budget only
    st = np.where(t == natural, status, np.where(t == t_rule, NOISE_RULE, MAX_ITER))
    return t, st, filled[np.arange(J), t]


def merged_studies(paths):
    """Trajectory files grouped by study (preset, k, sizes, replicates, pool: the same data and starts), each
    group merged into one (arrays, meta) with the union of its variants, so variants run separately share one
    best-known minimum. A variant in two files of a group must be the same run (the later file is skipped)."""
    groups = {}
    for path in paths:
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        study = (meta["preset"], meta["k"], tuple(meta["sizes"]), meta["replicates"], meta["pool"])
        arrays, merged = groups.setdefault(study, ({}, dict(meta, variants=[])))
        for variant, budget in meta["variants"]:
            if variant in dict(merged["variants"]):
                continue
            merged["variants"].append([variant, budget])
            for name in data.files:
                if name.startswith(f"{variant}_n"):
                    arrays[name] = data[name]
            merged.update({k: v for k, v in meta.items() if k.startswith(f"{variant}_n")})
    return list(groups.values())


def cmd_analyse(args):
    rules = {"none": None}
    for c in (0.0001, 0.001, 0.01):
        for m in (10, 30, 100):
            rules[f"window(c={c},m={m})"] = ("window", c, m)
        rules[f"pred(c={c})"] = ("pred", c, None)
    rows = []
    for data, meta in merged_studies(args.files):
        preset, pool, R, sigma = meta["preset"], meta["pool"], meta["replicates"], meta["sigma"]
        M = args.restarts
        assert 2 * M <= pool, "the pool must hold at least twice the starts a config uses"
        configs = []
        for variant, budget in meta["variants"]:
            budgets = sorted({b for b in (300, 1000, 3000) if b <= budget} | {budget})
            for b in budgets:
                for rname, rule in rules.items():
                    configs.append((variant, budget, b, rname, rule))
        best_by_n, results = {}, {}
        for n in meta["sizes"]:
            finals = []
            for variant, budget in meta["variants"]:
                tag = f"{variant}_n{n}"
                obj = data[f"{tag}_objective"]
                iters = data[f"{tag}_iterations"]
                finals.append(obj[np.arange(len(iters)), iters].reshape(-1))  # every job's last point
            best = np.full(R, np.inf)
            best_same = np.full(R, np.inf)  # the same M starts, any variant: a config's convergence only
            for f in finals:
                best = np.fmin(best, f[:R * pool].reshape(R, pool).min(axis=1))
                best = np.fmin(best, f[R * pool:])  # reference jobs
                best_same = np.fmin(best_same, f[:R * pool].reshape(R, pool)[:, :M].min(axis=1))
            best_by_n[n] = best
            for variant, budget, b, rname, rule in configs:
                tag = f"{variant}_n{n}"
                rec = {k: data[f"{tag}_{k}"] for k in ("objective", "predicted", "accepted")}
                rec["n"] = n
                t, st, ob = stop_point(rec, data[f"{tag}_status"], data[f"{tag}_iterations"], b, rule)
                t, st, ob = (a[:R * pool].reshape(R, pool)[:, :M] for a in (t, st, ob))
                keep = np.argmin(np.where(np.isfinite(ob), ob, np.inf), axis=1)
                pick = lambda a: a[np.arange(R), keep]
                gap = (pick(ob) - best) * n / sigma**2
                gap_same = (pick(ob) - best_same) * n / sigma**2
                results.setdefault((variant, b, rname), []).append(
                    dict(n=n, status=pick(st), iterations=pick(t), gap=gap, gap_same=gap_same,
                         job_iterations=t.reshape(-1),
                         wall=meta.get(f"{tag}_wall")))
        for (variant, b, rname), parts in results.items():
            st = np.concatenate([p["status"] for p in parts])
            gap = np.concatenate([p["gap"] for p in parts])
            it = np.concatenate([p["iterations"] for p in parts])
            jit = np.concatenate([p["job_iterations"] for p in parts])
            gap_same = np.concatenate([p["gap_same"] for p in parts])
            row = dict(preset=preset, variant=variant, max_iter=b, rule=rname, fits=int(st.size),
                       stopped_on_rule=float(np.mean(st != MAX_ITER)),
                       by_status={("noise_rule" if s == NOISE_RULE else STATUS_NAMES[int(s)]): int(np.sum(st == s))
                                  for s in np.unique(st)},
                       within_0_1=float(np.mean(gap <= 0.1)), within_1=float(np.mean(gap <= 1.0)),
                       within_0_1_same_starts=float(np.mean(gap_same <= 0.1)),
                       max_gap=float(np.max(gap)), kept_iterations_median=float(np.median(it)),
                       kept_iterations_p90=float(np.percentile(it, 90)),
                       job_iterations_median=float(np.median(jit)), job_iterations_p90=float(np.percentile(jit, 90)),
                       mean_job_iterations=float(np.mean(jit)),
                       mean_job_passes=float(np.mean(jit)) * PASSES_PER_ITERATION.get(variant, np.nan),
                       stopped_by_n=[float(np.mean(p["status"] != MAX_ITER)) for p in parts],
                       within_0_1_by_n=[float(np.mean(p["gap"] <= 0.1)) for p in parts],
                       run_wall_s_at_full_budget=[p["wall"] for p in parts])
            rows.append(row)
    with open(args.out, "w") as f:
        json.dump(dict(restarts=args.restarts, rows=rows), f, indent=1)
    shown = set(args.show.split(";"))
    print("| preset | variant | max_iter | rule | stop on rule | within 0.1 s2/n | within 0.1, same starts | "
          "within 1 | max gap | it med/p90 (kept) | job it mean | job passes mean |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["rule"] in shown or "all" in shown:
            print(f"| {r['preset']} | {r['variant']} | {r['max_iter']} | {r['rule']} | {r['stopped_on_rule']:.3f} | "
                  f"{r['within_0_1']:.3f} | {r['within_0_1_same_starts']:.3f} | {r['within_1']:.3f} | {r['max_gap']:.3g} | "
                  f"{r['kept_iterations_median']:.0f}/{r['kept_iterations_p90']:.0f} | {r['mean_job_iterations']:.0f} | "
                  f"{r['mean_job_passes']:.0f} |")


def cmd_halving(args):
    """A cheaper starts policy, evaluated on the recorded trajectories of one variant: run all `--pool` starts
    for t0 iterations, keep the K lowest objectives there, run only those on to the budget (their own stop), and
    return the best of them. Against the best of all the starts run to the end (the estimator as defined
    today): how often it is the same fit (within 0.1 sigma^2 / n), the gap to the best known (every variant's
    final point over the pool and the references), and the cost in iterations summed over starts. t0 = 0 is the
    baseline it must beat: the first K starts alone."""
    rows = []
    for data, meta in merged_studies(args.files):
        R, pool, sigma = meta["replicates"], meta["pool"], meta["sigma"]
        M = args.starts or pool  # the estimator's starts: the first M of the pool (the rest only in best known)
        budget = dict((v, b) for v, b in meta["variants"])[args.variant]
        for t0 in (int(t) for t in args.t0.split(",")):
            for keep in (int(k) for k in args.keep.split(",")):
                same, gap, cost, full_cost = [], [], [], []
                for n in meta["sizes"]:
                    tag = f"{args.variant}_n{n}"
                    obj, iters = data[f"{tag}_objective"], data[f"{tag}_iterations"]
                    J, B1 = obj.shape
                    idx = np.arange(B1)[None, :]
                    filled = np.where(idx <= iters[:, None], obj, obj[np.arange(J), iters][:, None])
                    final = filled[np.arange(J), iters]
                    best = np.full(R, np.inf)
                    for variant, _ in meta["variants"]:
                        o, it = data[f"{variant}_n{n}_objective"], data[f"{variant}_n{n}_iterations"]
                        f = o[np.arange(len(it)), it]
                        best = np.fmin(best, np.fmin(f[:R * pool].reshape(R, pool).min(axis=1), f[R * pool:]))
                    at_t0 = filled[:R * pool, min(t0, budget)].reshape(R, pool)[:, :M]
                    fin = final[:R * pool].reshape(R, pool)[:, :M]
                    its = iters[:R * pool].reshape(R, pool)[:, :M]
                    kept = np.argsort(np.where(np.isfinite(at_t0), at_t0, np.inf), axis=1)[:, :keep]
                    if t0 == 0:  # the baseline: the first K starts, no selection (the estimator with K starts)
                        kept = np.broadcast_to(np.arange(keep), (R, keep))
                    chosen = np.take_along_axis(fin, kept, axis=1).min(axis=1)
                    unit = sigma**2 / n
                    same.append((chosen - fin.min(axis=1)) / unit <= 0.1)
                    gap.append((chosen - best) / unit)
                    kept_its = np.take_along_axis(its, kept, axis=1)
                    cost.append(np.minimum(its, t0).sum(axis=1) + np.maximum(kept_its - t0, 0).sum(axis=1))
                    full_cost.append(its.sum(axis=1))
                same, gap, cost, full_cost = (np.concatenate(a) for a in (same, gap, cost, full_cost))
                rows.append(dict(preset=meta["preset"], variant=args.variant, budget=budget, starts=M, pool=pool, t0=t0,
                                 keep=keep, fits=int(same.size), same_as_all_starts=float(np.mean(same)),
                                 within_0_1_of_best_known=float(np.mean(gap <= 0.1)),
                                 within_1_of_best_known=float(np.mean(gap <= 1.0)),
                                 cost_ratio=float(cost.sum() / full_cost.sum())))
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print("| preset | budget | starts | t0 | keep | same fit as all starts | within 0.1 of best known | "
          "within 1 | cost / all starts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['budget']} | {r['starts']} | {r['t0']} | {r['keep']} | {r['same_as_all_starts']:.3f} | "
              f"{r['within_0_1_of_best_known']:.3f} | {r['within_1_of_best_known']:.3f} | {r['cost_ratio']:.2f} |")


def cmd_diagnose(args):
    """Why the default LM's fits hit the limit: for every job still running at `--at` iterations, how much the
    objective still falls afterwards (in sigma^2 / n), its damping, projected gradient, acceptance rate and how
    many coordinates sit on a face of the box; and a few trajectories."""
    from jaxmoe.estimation.problem import ravel
    report = []
    for path in args.files:
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        setting = jaxmoe.get_preset(meta["preset"])
        model = setting.fitted_model(meta["k"])
        lo, hi = (np.asarray(ravel(b)[0]) for b in model.bounds(True))
        free = lo < hi
        sigma, variant = meta["sigma"], args.variant
        budget = dict((v, b) for v, b in meta["variants"])[variant]
        for n in meta["sizes"]:
            tag = f"{variant}_n{n}"
            obj, damp, pg, acc = (data[f"{tag}_{k}"] for k in ("objective", "damping", "pgrad", "accepted"))
            iters, status, theta = data[f"{tag}_iterations"], data[f"{tag}_status"], data[f"{tag}_theta"]
            at = args.at
            running = iters > at  # still running at `at`: a MAX_ITER fit of a max_iter=`at` config
            unit = sigma**2 / n
            final = obj[np.arange(len(iters)), iters]
            for j in np.flatnonzero(running):
                w = slice(at - 50, at + 1)
                on_face = int(np.sum(free & ((theta[j] <= lo + 1e-9 * (hi - lo)) | (theta[j] >= hi - 1e-9 * (hi - lo)))))
                report.append(dict(
                    preset=meta["preset"], n=n, job=int(j), final_status=STATUS_NAMES[int(status[j])],
                    final_iteration=int(iters[j]),
                    decrease_0_to_at=float((obj[j, 0] - obj[j, at]) / unit),
                    decrease_last50_before_at=float((obj[j, at - 50] - obj[j, at]) / unit),
                    decrease_after_at=float((obj[j, at] - final[j]) / unit),
                    decrease_last100=float((obj[j, iters[j] - 100] - final[j]) / unit) if iters[j] >= 100 else None,
                    damping_at=float(damp[j, at]), damping_min_last50=float(np.min(damp[j, w])),
                    damping_max_last50=float(np.max(damp[j, w])),
                    pgrad_at=float(pg[j, at]), pgrad_final=float(pg[j, iters[j]]),
                    accept_rate_last50=float(np.mean(acc[j, w])), on_box_face=on_face, free=int(free.sum()),
                    objective_over_sigma2=float(obj[j, at] / sigma**2),
                    trace=[float((obj[j, t] - final[j]) / unit) for t in (0, 10, 30, 100, 300, 600, 1000, 2000, 3000)
                           if t <= iters[j]]))
    with open(args.out, "w") as f:
        json.dump(json.loads(json.dumps(report), parse_float=lambda v: float(f"{float(v):.4g}")), f)
    print("| preset | n | jobs running at it. %d | median decrease it. %d-%d, s2/n | median decrease %d-%d | "
          "median decrease after %d | damping at %d (median) | accepted, last 50 | pgrad at %d | coords on box face |"
          % (args.at, args.at - 50, args.at, 0, args.at, args.at, args.at, args.at))
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["preset"], r["n"]) for r in report}, key=lambda k: (k[0], k[1]))
    for key in keys:
        rs = [r for r in report if (r["preset"], r["n"]) == key]
        med = lambda f: float(np.median([r[f] for r in rs]))
        print(f"| {key[0]} | {key[1]} | {len(rs)} | {med('decrease_last50_before_at'):.3g} | "
              f"{med('decrease_0_to_at'):.3g} | {med('decrease_after_at'):.3g} | {med('damping_at'):.2g} | "
              f"{med('accept_rate_last50'):.2f} | {med('pgrad_at'):.2g} | {med('on_box_face'):.0f} of {rs[0]['free']} |")


def cmd_crosscheck(args):
    """fit_curve with the default LM (max_iter 300, best of --restarts) against the trajectories' default
    variant cut at 300 iterations: the same fits (status and objective) if the recording is faithful."""
    data = np.load(args.file)
    meta = json.loads(str(data["meta"]))
    setting = jaxmoe.get_preset(meta["preset"])
    sizes, R, pool, M = meta["sizes"], meta["replicates"], meta["pool"], args.restarts
    fit = jaxmoe.fit_curve(setting, sizes, R, seed=0, k=meta["k"], restarts=M, solver=jaxmoe.get_solver("lm"))
    out = dict(preset=meta["preset"], sizes=sizes, restarts=M, by_n=[])
    for i, n in enumerate(sizes):
        tag = f"default_n{n}"
        rec = {"objective": data[f"{tag}_objective"], "n": n}
        t, st, ob = stop_point(rec, data[f"{tag}_status"], data[f"{tag}_iterations"], 300, None)
        t, st, ob = (a[:R * pool].reshape(R, pool)[:, :M] for a in (t, st, ob))
        keep = np.argmin(ob, axis=1)
        mine_obj, mine_st = ob[np.arange(R), keep], st[np.arange(R), keep]
        rel = np.abs(mine_obj - fit.objective[i]) / fit.objective[i]
        out["by_n"].append(dict(n=n, fit_curve_converged=float(np.mean(fit.converged[i])),
                                trajectory_converged=float(np.mean(mine_st != MAX_ITER)),
                                same_status=float(np.mean(mine_st == fit.status[i])), max_rel_objective_diff=float(rel.max())))
    print(json.dumps(out))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def cmd_linear_block(args):
    """The conditioning of the linear block C = J_c' J_c (relative eigenvalues) at the near-truth starts of
    replicate 0 and at the default LM's end point of each of them: how well the data determine the affine
    coordinates that `varpro` re-solves exactly."""
    setting = jaxmoe.get_preset(args.preset)
    model = setting.fitted_model(setting.k_star + 1)
    noise = default_starts(True)[1]
    (lo, unravel), (hi, _) = (ravel(b) for b in model.bounds(True))
    out = dict(preset=args.preset, n=args.n, starts=[])
    key = fit_keys(jax.random.PRNGKey(0), jnp.full((1,), args.n), jnp.arange(1))[0]
    x, y, mask, _ = fit_data(key, args.n, setting=setting, length=args.n)
    problem = least_squares_problem(model, x, y, mask)[0]
    linear = np.asarray(linear_coordinates(model, unravel, lo, hi, x, jax.random.PRNGKey(1))) & np.asarray(problem.free)
    starts, _ = fit_starts(key, setting=setting, model=model, init="near_truth", restarts=args.starts, noise=noise,
                           scale=3.0)
    fit = jax.jit(lambda t: jax.lax.while_loop(lambda s: (s.status == RUNNING) & (s.iteration < 1000),
                                               lambda s: lm.update(s, problem, lm.LMConfig(max_iter=1000)),
                                               lm.init(t, problem, lm.LMConfig(max_iter=1000))).theta)
    for m, theta in enumerate(starts):
        row = dict(start=m)
        for where, point in (("start", problem.project(theta)), ("lm_1000", fit(theta))):
            gram = np.asarray(problem.normal_equations(point)[2])[np.ix_(linear, linear)]
            eig = np.linalg.eigvalsh(gram)
            row[where] = dict(relative_eigenvalues=[float(f"{v:.3g}") for v in eig / eig.max()])
        out["starts"].append(row)
        print(m, "min relative eigenvalue of C: start", row["start"]["relative_eigenvalues"][0],
              "after 1000 LM iterations", row["lm_1000"]["relative_eigenvalues"][0], flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--preset", required=True)
    run.add_argument("--sizes", default="100,1000,10000")
    run.add_argument("--replicates", type=int, default=8)
    run.add_argument("--pool", type=int, default=8, help="starts per fit recorded (configs use half of them)")
    run.add_argument("--variants", default="default:3000",
                     help=f"';'-separated name:budget, names from {sorted(VARIANTS)}")
    run.add_argument("--out-dir", default=OUT_DIR)
    run.add_argument("--tag", default="", help="suffix of the output file name (<preset><tag>.npz)")
    ana = sub.add_parser("analyse")
    ana.add_argument("files", nargs="+")
    ana.add_argument("--restarts", type=int, default=4)
    ana.add_argument("--show", default="none;window(c=0.001,m=30);window(c=0.01,m=30)", help="';'-separated rules to print (all: every rule)")
    ana.add_argument("--out", default=os.path.join(OUT_DIR, "summary.json"))
    dia = sub.add_parser("diagnose")
    dia.add_argument("files", nargs="+")
    dia.add_argument("--variant", default="default")
    dia.add_argument("--at", type=int, default=300)
    dia.add_argument("--out", default=os.path.join(OUT_DIR, "diagnosis.json"))
    cro = sub.add_parser("crosscheck")
    cro.add_argument("file")
    cro.add_argument("--restarts", type=int, default=4)
    cro.add_argument("--out", default=os.path.join(OUT_DIR, "crosscheck.json"))
    hal = sub.add_parser("halving")
    hal.add_argument("files", nargs="+")
    hal.add_argument("--variant", default="default")
    hal.add_argument("--starts", type=int, default=0, help="the estimator's starts (default: the whole pool)")
    hal.add_argument("--t0", default="0,30,100,300", help="0: the first K starts, no selection (baseline)")
    hal.add_argument("--keep", default="1,2,4")
    hal.add_argument("--out", required=True)
    lin = sub.add_parser("linear-block")
    lin.add_argument("--preset", required=True)
    lin.add_argument("--n", type=int, default=1000)
    lin.add_argument("--starts", type=int, default=4)
    lin.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.cmd == "halving":
        cmd_halving(args)
    elif args.cmd == "linear-block":
        cmd_linear_block(args)
    elif args.cmd == "crosscheck":
        cmd_crosscheck(args)
    elif args.cmd == "diagnose":
        cmd_diagnose(args)
    elif args.cmd == "run":
        os.makedirs(args.out_dir, exist_ok=True)
        cmd_run(args)
    else:
        cmd_analyse(args)


if __name__ == "__main__":
    main()
