"""Where does an LM iteration's time go? One batch of B lanes, same data, same parameters, side by side.

    .venv/bin/python experiments/profile_iteration.py [--sizes 1000,10000,100000] [--lanes 4] [--out PATH]

For softmax-ridge, k = k* + 1 = 3, float64, B fits at sample size n (near-truth starts), it times (ms per
batch, best of `--repeats`, each timing K evaluations inside one jitted `fori_loop`, so no dispatch cost):

- `eval_rJ`: the fused residual + Jacobian evaluation (r: B x n, J: B x n x p), `problem.linearise`;
- `eval_normal`: what LM consumes of it: objective r.r, J^T r and J^T J (`problem.normal_equations`,
  accumulated over blocks of `--block` samples); `eval_normal_unblocked`: the same from the whole r and J;
- `gram_only`: J^T J of a ready Jacobian; `solve_only`: the damped Cholesky solve of B p x p systems;
- `lm_update`: one LM iteration (`levenberg_marquardt.update`, vmap over the B lanes);
- `queue_step`: one step of the work queue (`queue.solve_queue`: LM update + data gather + freeze/refill),
  measured as the run time of a queue whose jobs never stop early, divided by its number of steps.

The ratios `lm_update / eval_rJ` and `queue_step / eval_rJ` are the "solver iteration vs one fused objective +
Jacobian evaluation" target of issue 7 (<= 2); `queue_step / eval_normal` is the solver's overhead over the
least work an iteration must do. Times are wall-clock and CPU (process) time, best of `--repeats`; on a
shared machine the CPU times are the steadier. Writes JSON to experiments/results/profile_iteration.json.
"""

import argparse
import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import jaxmoe  # noqa: E402
from jaxmoe.sweeps.store import atomic_write_json  # noqa: E402
from jaxmoe.estimation import levenberg_marquardt as lm  # noqa: E402
from jaxmoe.estimation import problem as problem_module  # noqa: E402
from jaxmoe.estimation.problem import least_squares_problem  # noqa: E402
from jaxmoe.estimation.queue import solve_queue  # noqa: E402
from jaxmoe.estimation.sampling import fit_data, fit_starts  # noqa: E402
from jaxmoe.estimation.solvers import levenberg_marquardt_solver  # noqa: E402

K = 16  # evaluations per timed call


def best_ms(fn, args, repeats):
    """(wall ms, CPU ms), each the best of `repeats` runs after a compile-and-warm-up run."""
    jax.block_until_ready(fn(*args))
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall * 1e3, cpu * 1e3


def profile(setting, n, lanes, repeats, block):
    """One row of timings at sample size n (`block`: samples per normal-equation block, 0: one block)."""
    model = setting.fitted_model()
    cfg = lm.LMConfig()
    keys = jax.random.split(jax.random.PRNGKey(0), lanes)
    x, y, mask, _ = jax.jit(jax.vmap(functools.partial(fit_data, setting=setting, length=n), in_axes=(0, None)))(keys, n)
    starts, _ = jax.jit(jax.vmap(functools.partial(fit_starts, setting=setting, model=model, init="near_truth",
                                                   restarts=1, noise=0.1, scale=3.0)))(keys)
    theta = starts[:, 0]
    problem = lambda x1, y1, m1: least_squares_problem(model, x1, y1, m1, block_size=block)[0]
    states = jax.jit(jax.vmap(lambda x1, y1, m1, t: lm.init(t, problem(x1, y1, m1), cfg)))(x, y, mask, theta)

    def repeat(body):  # K dependent evaluations (the parameters move by 0 * result, so nothing is hoisted)
        def run(*args):
            def step(_, acc):
                return acc + body(*args, acc)
            return jax.lax.fori_loop(0, K, step, jnp.zeros(()))
        return jax.jit(run)

    def eval_rj(x, y, m, t, acc):
        r, jac = jax.vmap(lambda *a: problem(*a[:3]).linearise(a[3]))(x, y, m, t + 0.0 * acc)
        return 0.0 * (jnp.sum(r) + jnp.sum(jac))

    def eval_normal(x, y, m, t, acc, block=block):
        f, g, h = jax.vmap(lambda *a: least_squares_problem(model, *a[:3], block_size=block)[0].normal_equations(a[3]))(
            x, y, m, t + 0.0 * acc)
        return 0.0 * (jnp.sum(f) + jnp.sum(g) + jnp.sum(h))

    _, jac = jax.jit(jax.vmap(lambda *a: problem(*a[:3]).linearise(a[3])))(x, y, mask, theta)

    def gram_only(j, acc):
        return 0.0 * jnp.sum(jnp.einsum("bnp,bnq->bpq", j + 0.0 * acc, j))

    def solve_only(s, acc):
        def one(st):
            a = st.gram + (st.damping + acc) * jnp.diag(st.scale) + 1e-8 * jnp.eye(st.gram.shape[0])
            return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), -st.grad)
        return 0.0 * jnp.sum(jax.vmap(one)(s))

    def updates(x, y, m, s):
        def step(_, s):
            return jax.vmap(lambda x1, y1, m1, s1: lm.update(s1, problem(x1, y1, m1), cfg))(x, y, m, s)
        return jax.lax.fori_loop(0, K, step, s)

    row = dict(n=n, lanes=lanes, p=int(theta.shape[1]), block_size=block)

    def record(name, fn, args, count):
        wall, cpu = best_ms(fn, args, repeats)
        row[name + "_ms"], row[name + "_cpu_ms"] = wall / count, cpu / count

    record("eval_rJ", repeat(eval_rj), (x, y, mask, theta), K)
    record("eval_normal", repeat(eval_normal), (x, y, mask, theta), K)
    record("eval_normal_unblocked", repeat(functools.partial(eval_normal, block=0)), (x, y, mask, theta), K)
    record("gram_only", repeat(gram_only), (jac,), K)
    record("solve_only", repeat(solve_only), (states,), K)
    record("lm_update", jax.jit(updates), (x, y, mask, states), K)

    # The queue: `lanes` jobs on `lanes` lanes, none stops before its budget (gtol = ftol = 0, no stall), so
    # it runs exactly `budget` steps; one extra lane-load of fresh states is part of it.
    never = lm.LMConfig(gtol=0.0, ftol=0.0, max_damping=float("inf"))
    budget = 8 * K
    queue = jax.jit(lambda x, y, m, t: solve_queue(model, x, y, m, t, jnp.arange(lanes),
                                                   jnp.full((lanes,), budget), lanes=lanes,
                                                   solver=levenberg_marquardt_solver(never), block_size=block))
    record("queue_step", queue, (x, y, mask, theta), budget + 1)
    for clock in ("", "_cpu"):
        for a, b in [("lm_update", "eval_rJ"), ("queue_step", "eval_rJ"), ("queue_step", "eval_normal")]:
            row[f"{a}_over_{b}{clock}"] = row[f"{a}{clock}_ms"] / row[f"{b}{clock}_ms"]
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="softmax-ridge")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block", type=int, default=None, help="samples per block (default: problem.default_block_size())")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "profile_iteration.json"))
    args = parser.parse_args()
    setting = jaxmoe.get_preset(args.preset)
    block = problem_module.default_block_size() if args.block is None else args.block  # passed to every problem
    load_start = os.getloadavg()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        row = profile(setting, n, args.lanes, args.repeats, block)
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    result = dict(command="experiments/profile_iteration.py --sizes {} --lanes {} --block {}".format(
                      args.sizes, args.lanes, block),
                  machine=dict(platform=platform.platform(), cpus=os.cpu_count(), jax=jax.__version__,
                               device=str(jax.devices()[0])),
                  loadavg_start=load_start, loadavg_end=os.getloadavg(), rows=rows)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
