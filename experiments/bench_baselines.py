"""A whole rate curve four ways, in one process: jaxmoe batched, jaxmoe one fit at a time, SciPy and NumPy per fit.

    .venv/bin/python experiments/bench_baselines.py                 # 16 replicates x 7 sizes 10^2..10^5 (make bench)
    .venv/bin/python experiments/bench_baselines.py --sizes 7 --replicates 16 --gd-replicates 2

Workload (issue 7): softmax-ridge, k = k* + 1 = 3, sizes log-spaced 10^2..10^5, `--replicates` fits per size,
each fit the best of fit_curve's 4 near-truth starts, every method on the same data and the same starts
(drawn by jaxmoe from the fit's key), float64, the same stopping rule as far as each method allows.

- **jaxmoe batched**: `fit_curve(setting, sizes, replicates)`, the default path (LM work queue), timed as one call
  including compilation, twice: cold (a fresh persistent compilation cache) and warm (the same call again:
  the cache holds every shape, as in any later sweep of the same shapes).
- **jaxmoe one at a time**: the same LM (`run_solver`, 300 iterations, gtol 1e-9, ftol 1e-12), jitted per sample
  size (compile time measured ahead of time, reported apart), a Python loop over replicates and starts.
- **SciPy**: `scipy.optimize.least_squares(method="trf")` per start in a Python loop, analytic NumPy Jacobian
  (residual and Jacobian share one forward pass), bounds = the same box with the gauge-pinned coordinates
  removed (trf needs lower < upper), same start; stopping: gtol 5e-10 on its (bound-scaled) gradient of
  ||r||^2 / 2 (= 1e-9 on the MSE gradient), ftol 1e-12 (relative decrease, as LM's), xtol 1e-15 (a stall
  rule), max_nfev 300 (LM's 300 evaluations). `--scipy-x-scale jac` gives Moré scaling as LM uses.
- **NumPy gradient descent**: projected gradient descent on the MSE with Armijo backtracking (step doubled
  after each accepted step), analytic gradient, same gtol / ftol rule, `--gd-max-iter` iterations; on the
  first `--gd-replicates` replicates of each size only (it is slow): its whole-curve time is extrapolated
  as (time per fit at each size) x replicates, and marked so.

Every method's final objective is recomputed by one NumPy function from its final parameters; a fit's best
is the lowest over methods, and each method's fraction of fits within 1e-6 relative of the best is reported
(a speed claim needs an equal or better objective). Wall-clock and CPU (process) seconds are both reported:
the machine is shared, and CPU time is the steadier of the two. Peak memory: the process's peak resident
set size during each method (VmHWM, reset before each). Load averages at start and end of each phase.
`--host-devices 2` exposes the CPU's 2 cores as 2 JAX devices (set before JAX starts): the batched path then
shards its fits over both, the other methods run as before. Writes experiments/results/bench_baselines.json.
"""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see the docstring: threaded BLAS thrashed on the shared machine
if "--host-devices" in sys.argv:  # before JAX starts: expose the CPU as several devices (fit_curve shards over them)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count="
                               + sys.argv[sys.argv.index("--host-devices") + 1]).strip()

import argparse
import functools
import json
import os
import platform
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit

jax.config.update("jax_enable_x64", True)

import jaxmoe  # noqa: E402
from jaxmoe.sweeps.store import atomic_write_json  # noqa: E402
from jaxmoe.estimation.sampling import fit_data, fit_keys, fit_starts  # noqa: E402
from jaxmoe.estimation.levenberg_marquardt import LMConfig  # noqa: E402
from jaxmoe.estimation.problem import least_squares_problem, ravel  # noqa: E402
from shared import block_size  # noqa: E402  (beside this script)
from jaxmoe.estimation.solvers import levenberg_marquardt_solver, run_solver  # noqa: E402
from jaxmoe.families import regression_jacobian  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# ----------------------------------------------------------------------------------------------------- clocks
class Clock:
    """Wall and CPU seconds and peak RSS of a block (peak reset at entry via /proc/self/clear_refs)."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.peak_mib = peak_rss_mib()


def peak_rss_mib():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load():
    return [round(v, 2) for v in os.getloadavg()]


# ----------------------------------------------------------------------------------------- the NumPy model
class NumpyRidgeMoE:
    r"""$f(x) = \sum_i \mathrm{softmax}_i(\beta_{0i} + \beta_{1i}^\top x)\, \sigma(a_i^\top x + b_i)$ with
    theta = [beta0 (k), beta1 (k d), a (k d), b (k)] (jaxmoe's ravel order), x: (d, n)."""

    def __init__(self, k, d):
        self.k, self.d = k, d

    def split(self, theta):
        k, d = self.k, self.d
        return theta[:k], theta[k:k + k * d].reshape(k, d), theta[k + k * d:k + 2 * k * d].reshape(k, d), \
            theta[k + 2 * k * d:]

    def forward(self, theta, x):
        beta0, beta1, a, b = self.split(theta)
        logits = beta0[:, None] + beta1 @ x
        logits -= logits.max(axis=0)
        w = np.exp(logits)
        w /= w.sum(axis=0)
        h = expit(a @ x + b[:, None])
        return (w * h).sum(axis=0), w, h

    def jacobian(self, x, f, w, h):
        """df/dtheta, (n, p), from a forward pass's (f, w, h)."""
        c = w * (h - f)  # df / d logit_i
        g = w * h * (1.0 - h)  # df / d pre-activation_i
        n = x.shape[1]
        cols = [c.T, (c[:, None, :] * x[None]).reshape(-1, n).T, (g[:, None, :] * x[None]).reshape(-1, n).T, g.T]
        return np.concatenate(cols, axis=1)

    def gradient(self, x, e, f, w, h):
        """Gradient of the MSE mean(e^2), e = y - f, without forming the Jacobian."""
        n = x.shape[1]
        c = w * (h - f) * e
        g = w * h * (1.0 - h) * e
        return (-2.0 / n) * np.concatenate([c.sum(axis=1), (c @ x.T).ravel(), (g @ x.T).ravel(), g.sum(axis=1)])

    def mse(self, theta, x, y):
        return float(np.mean((y - self.forward(theta, x)[0]) ** 2))


def scipy_fit(model, x, y, theta0, lower, upper, x_scale, max_nfev=300, callback=None):
    """One start: trf on the free coordinates, analytic Jacobian sharing the residual's forward pass
    (`max_nfev`: LM's budget; `callback`: least_squares' per-iteration hook, e.g. a stopping rule)."""
    free = lower < upper
    n = y.size
    s = np.sqrt(n)
    fixed = theta0.copy()
    cache = {}

    def full(z):
        t = fixed.copy()
        t[free] = z
        return t

    def forward(z):
        key = z.tobytes()
        if cache.get("key") != key:
            cache.update(key=key, out=model.forward(full(z), x))
        return cache["out"]

    def fun(z):
        return (y - forward(z)[0]) / s

    def jac(z):
        f, w, h = forward(z)
        return -model.jacobian(x, f, w, h)[:, free] / s

    res = least_squares(fun, theta0[free], jac=jac, bounds=(lower[free], upper[free]), method="trf",
                        ftol=1e-12, xtol=1e-15, gtol=5e-10, max_nfev=max_nfev, x_scale=x_scale,
                        callback=callback)
    return full(res.x), int(res.nfev), int(res.njev), int(res.status)


def gd_fit(model, x, y, theta0, lower, upper, max_iter, gtol=1e-9, ftol=1e-12):
    """Projected gradient descent with Armijo backtracking; returns theta, iterations, evaluations, status."""
    theta = np.clip(theta0, lower, upper)
    f, w, h = model.forward(theta, x)
    e = y - f
    value = float(np.mean(e * e))
    grad = model.gradient(x, e, f, w, h)
    step, evals, status = 1.0, 1, "max_iter"
    it = 0
    for it in range(1, max_iter + 1):
        if np.max(np.abs(theta - np.clip(theta - grad, lower, upper))) <= gtol:
            status = "gtol"
            break
        while True:
            cand = np.clip(theta - step * grad, lower, upper)
            fc, wc, hc = model.forward(cand, x)
            ec = y - fc
            vc = float(np.mean(ec * ec))
            evals += 1
            if vc <= value - 1e-4 * float(grad @ (theta - cand)):
                break
            step *= 0.5
            if step < 1e-30:
                break
        if step < 1e-30:
            status = "stall"
            break
        decrease = (value - vc) / value
        theta, value, f, w, h, e = cand, vc, fc, wc, hc, ec
        grad = model.gradient(x, e, f, w, h)
        step *= 2.0
        if decrease <= ftol:
            status = "ftol"
            break
    return theta, it, evals, status


# ------------------------------------------------------------------------------------------------- the study
def study_data(setting, model, sizes, replicates, seed, restarts):
    """Per size: x (R, d, n), y (R, n), starts (R, M, p), truth MSE (R,): exactly fit_curve's data and starts."""
    base = jax.random.PRNGKey(seed)
    starts_fn = jax.jit(jax.vmap(functools.partial(fit_starts, setting=setting, model=model, init="near_truth",
                                                   restarts=restarts, noise=0.1, scale=3.0)))
    data = {}
    for n in sizes:
        keys = fit_keys(base, jnp.asarray([int(n)] * replicates), jnp.asarray(list(range(replicates))))
        x, y, mask, truth_mse = jax.jit(jax.vmap(functools.partial(fit_data, setting=setting, length=int(n))))(
            keys, jnp.asarray([int(n)] * replicates))
        starts, _ = starts_fn(keys)
        data[int(n)] = dict(x=np.asarray(x), y=np.asarray(y), starts=np.asarray(starts),
                            truth_mse=np.asarray(truth_mse))
    return data


def flat_params(params, index):
    return np.concatenate([np.asarray(leaf[index]).ravel() for leaf in jax.tree_util.tree_leaves(params)])


def run_batched(setting, sizes, replicates, seed, restarts, lanes=None, memory_gib=2.0, block=None):
    with Clock() as clock:
        fit = jaxmoe.fit_curve(setting, sizes, replicates, seed=seed, restarts=restarts, init_noise=0.1, lanes=lanes,
                               memory_gib=memory_gib, block_size=block)
    thetas = {int(n): np.stack([flat_params(fit.params, (i, r)) for r in range(replicates)])
              for i, n in enumerate(fit.sizes)}
    info = {k: fit.info[k] for k in ("seconds", "compile_seconds", "compile_total_seconds", "waste_ratio",
                                      "work_ratio", "sample_iterations", "executed_sample_iterations",
                                      "iterations_total", "devices", "buckets", "chunk_sizes")}
    info["chunk_sizes"] = {str(k): v for k, v in info["chunk_sizes"].items()}
    return dict(wall=clock.wall, cpu=clock.cpu, peak_mib=clock.peak_mib, info=info,
                converged_fraction=fit.converged_fraction, truth_mse=fit.objective_truth,
                objective_reported=fit.objective), thetas


def run_one_at_a_time(model, d, lower, upper, block=None):
    """Every (replicate, start) of one size through one jitted LM, in a Python loop (`block`: samples per
    normal-equation block, None: the default backend's)."""
    solver = levenberg_marquardt_solver(LMConfig())

    def single(x, y, theta0):
        problem = least_squares_problem(model, x, y, block_size=block)[0]
        state = run_solver(solver, problem, theta0)
        return state.theta, state.objective, state.iteration

    x, y, starts = d["x"], d["y"], d["starts"]
    with Clock() as compile_clock:
        compiled = jax.jit(single).lower(jnp.asarray(x[0]), jnp.asarray(y[0]), jnp.asarray(starts[0, 0])).compile()
    xs, ys = [jnp.asarray(a) for a in x], [jnp.asarray(a) for a in y]
    jax.block_until_ready(compiled(xs[0], ys[0], jnp.asarray(starts[0, 0])))  # first execution: one-off start-up
    best, iterations = [], 0
    with Clock() as clock:
        for r in range(len(xs)):
            outs = []
            for m in range(starts.shape[1]):
                theta, objective, it = jax.block_until_ready(compiled(xs[r], ys[r], jnp.asarray(starts[r, m])))
                outs.append((float(objective) if np.isfinite(objective) else np.inf, np.asarray(theta)))
                iterations += int(it)
            best.append(min(outs, key=lambda o: o[0])[1])
    return dict(wall=clock.wall, cpu=clock.cpu, peak_mib=clock.peak_mib, compile_wall=compile_clock.wall,
                compile_cpu=compile_clock.cpu, iterations=iterations), np.stack(best)


def run_scipy(npm, d, lower, upper, x_scale):
    x, y, starts = d["x"], d["y"], d["starts"]
    best, nfev, njev, statuses = [], 0, 0, []
    with Clock() as clock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(x.shape[0]):
            outs = []
            for m in range(starts.shape[1]):
                theta, fe, je, status = scipy_fit(npm, x[r], y[r], starts[r, m], lower, upper, x_scale)
                nfev, njev = nfev + fe, njev + je
                statuses.append(status)
                outs.append((npm.mse(theta, x[r], y[r]), theta))
            best.append(min(outs, key=lambda o: o[0])[1])
    return dict(wall=clock.wall, cpu=clock.cpu, peak_mib=clock.peak_mib, nfev=nfev, njev=njev,
                status_counts={str(s): statuses.count(s) for s in sorted(set(statuses))}), np.stack(best)


def run_gd(npm, d, lower, upper, replicates, max_iter):
    x, y, starts = d["x"], d["y"], d["starts"]
    best, iterations, evals, statuses = [], 0, 0, []
    with Clock() as clock:
        for r in range(replicates):
            outs = []
            for m in range(starts.shape[1]):
                theta, it, ev, status = gd_fit(npm, x[r], y[r], starts[r, m], lower, upper, max_iter)
                iterations, evals = iterations + it, evals + ev
                statuses.append(status)
                outs.append((npm.mse(theta, x[r], y[r]), theta))
            best.append(min(outs, key=lambda o: o[0])[1])
    return dict(wall=clock.wall, cpu=clock.cpu, peak_mib=clock.peak_mib, iterations=iterations, evaluations=evals,
                status_counts={s: statuses.count(s) for s in sorted(set(statuses))}), np.stack(best)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="softmax-ridge")
    parser.add_argument("--sizes", type=int, default=7, help="number of log-spaced sizes in [10^2, 10^5]")
    parser.add_argument("--max-size", type=float, default=1e5)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gd-replicates", type=int, default=2)
    parser.add_argument("--gd-max-iter", type=int, default=1000)
    parser.add_argument("--scipy-x-scale", default="1.0", help="'1.0' (SciPy's default) or 'jac'")
    parser.add_argument("--host-devices", type=int, default=1,
                        help="expose the CPU as this many JAX devices (XLA_FLAGS); fit_curve shards over all of them")
    parser.add_argument("--lanes", type=int, default=None, help="fit_curve's queue width (default: its own)")
    parser.add_argument("--block", type=block_size, default=None,
                        help="samples per normal-equation block for jaxmoe ('full': one block; default: the engine's)")
    parser.add_argument("--memory-gib", type=float, default=2.0, help="fit_curve's memory_gib")
    parser.add_argument("--skip", default="", help="comma list of methods to skip: one,scipy,gd")
    parser.add_argument("--out", default=os.path.join(RESULTS, "bench_baselines.json"))
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    x_scale = "jac" if args.scipy_x_scale == "jac" else float(args.scipy_x_scale)
    cache_dir = tempfile.mkdtemp(prefix="jaxmoe-bench-cache-")
    jax.config.update("jax_compilation_cache_dir", cache_dir)  # fresh: the first batched call compiles cold

    setting = jaxmoe.get_preset(args.preset)
    model = setting.fitted_model()
    restarts = 4 if setting.k_fit > setting.k_star else 1  # the workload of every run so far (fixed, passed to every method)
    sizes = np.unique(np.round(np.logspace(2, np.log10(args.max_size), args.sizes)).astype(int))
    lower, upper = (np.asarray(ravel(b)[0]) for b in model.bounds(True))
    npm = NumpyRidgeMoE(model.k, setting.d)
    phases = {"start": load()}

    # The NumPy model is jaxmoe's model: values and Jacobian agree on random parameters.
    theta = np.asarray(ravel(jaxmoe.random_init(jax.random.PRNGKey(1), model))[0])
    xt = np.linspace(-1, 1, 7)[None]
    f_j, jac_j = regression_jacobian(model, ravel(model.zeros())[1](jnp.asarray(theta)), jnp.asarray(xt))
    f_n, w_n, h_n = npm.forward(theta, xt)
    np.testing.assert_allclose(f_n, np.asarray(f_j), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(npm.jacobian(xt, f_n, w_n, h_n), np.asarray(jac_j), rtol=1e-10, atol=1e-12)

    # Warm-up: the process's first fit_curve also pays one-off costs (backend start, small jits).
    jaxmoe.fit_curve(setting, [50], 2, seed=1, restarts=1, block_size=args.block)
    data = study_data(setting, model, sizes, args.replicates, args.seed, restarts)

    results, thetas = {}, {}
    print(f"sizes {sizes.tolist()}, {args.replicates} replicates, {restarts} starts per fit; load {load()}", flush=True)
    results["batched_cold"], thetas["batched"] = run_batched(setting, sizes, args.replicates, args.seed, restarts, args.lanes,
                                                             args.memory_gib, args.block)
    phases["after_batched_cold"] = load()
    print("batched (cold compile):", round(results["batched_cold"]["wall"], 1), "s", flush=True)
    # Same data as fit_curve's: the truth's MSE agrees.
    truth_mse = results["batched_cold"].pop("truth_mse")
    truth_gap = max(float(np.max(np.abs(truth_mse[i] - data[int(n)]["truth_mse"]) / data[int(n)]["truth_mse"]))
                    for i, n in enumerate(sizes))
    reported = results["batched_cold"].pop("objective_reported")

    per_size = []
    for n in sizes:
        n = int(n)
        d = data[n]
        row = dict(n=n)
        if "one" not in skip:
            row["one_at_a_time"], best = run_one_at_a_time(model, d, lower, upper, args.block)
            thetas.setdefault("one_at_a_time", {})[n] = best
        if "scipy" not in skip:
            row["scipy"], best = run_scipy(npm, d, lower, upper, x_scale)
            thetas.setdefault("scipy", {})[n] = best
        if "gd" not in skip:
            row["gd"], best = run_gd(npm, d, lower, upper, args.gd_replicates, args.gd_max_iter)
            thetas.setdefault("gd", {})[n] = best
        row["load"] = load()
        per_size.append(row)
        print(json.dumps({k: ({kk: (round(vv, 3) if isinstance(vv, float) else vv) for kk, vv in v.items()
                               if kk in ("wall", "cpu", "compile_wall")} if isinstance(v, dict) else v)
                          for k, v in row.items()}), flush=True)
    phases["after_per_fit_methods"] = load()
    results["batched_warm"], thetas_warm = run_batched(setting, sizes, args.replicates, args.seed, restarts, args.lanes,
                                                       args.memory_gib, args.block)
    results["batched_warm"].pop("truth_mse"), results["batched_warm"].pop("objective_reported")
    phases["end"] = load()
    print("batched (warm cache):", round(results["batched_warm"]["wall"], 1), "s", flush=True)

    # ------------------------------------------------------------------------------- objectives, per fit
    objective = {}
    for method, by_size in thetas.items():
        objective[method] = {n: np.array([npm.mse(t, data[n]["x"][r], data[n]["y"][r]) for r, t in enumerate(by_size[n])])
                             for n in by_size}
    warm_same = all(np.array_equal(np.asarray(thetas_warm[n]), np.asarray(thetas["batched"][n])) for n in thetas_warm)
    best = {n: np.min(np.stack([objective[m][n][: args.gd_replicates] if m == "gd" else objective[m][n][: args.gd_replicates]
                                for m in objective]), axis=0) for n in objective["batched"]}
    best_all = {n: np.min(np.stack([objective[m][n] for m in objective if m != "gd"]), axis=0)
                for n in objective["batched"]}
    for n in best:  # GD ran on the first gd_replicates only
        best_all[n][: args.gd_replicates] = np.minimum(best_all[n][: args.gd_replicates], best[n])
    quality = {}
    for m in objective:
        within, gaps = [], []
        for n in objective[m]:
            ref = best_all[n][: len(objective[m][n])]
            gap = (objective[m][n] - ref) / ref
            within.append(gap <= 1e-6)
            gaps.append(gap)
        within, gaps = np.concatenate(within), np.concatenate(gaps)
        quality[m] = dict(fits=int(within.size), within_1e6_of_best=float(np.mean(within)),
                          max_relative_gap=float(np.max(gaps)), median_relative_gap=float(np.median(gaps)))
    # Pairwise: the fraction of fits where the row method's objective <= (1 + 1e-6) x the column method's.
    pairwise = {}
    for a in objective:
        for b in objective:
            if a == b:
                continue
            flags = [objective[a][n][: len(objective[b][n])] <= objective[b][n][: len(objective[a][n])] * (1 + 1e-6)
                     for n in objective[a]]
            pairwise[f"{a}_at_least_as_good_as_{b}"] = float(np.mean(np.concatenate(flags)))
    quality["pairwise"] = pairwise
    quality["batched"]["reported_vs_recomputed_max_rel"] = float(max(
        np.max(np.abs(reported[i] - objective["batched"][int(n)]) / objective["batched"][int(n)])
        for i, n in enumerate(sizes)))

    # ------------------------------------------------------------------------------------------ totals
    fits = len(sizes) * args.replicates
    sum_n = int(np.sum(sizes)) * args.replicates
    totals = {}
    for key in ("batched_cold", "batched_warm"):
        b = results[key]
        totals[key] = dict(wall=b["wall"], cpu=b["cpu"], compile_wait=b["info"]["compile_seconds"],
                           compile_total=b["info"]["compile_total_seconds"], peak_mib=b["peak_mib"],
                           sample_iterations=b["info"]["sample_iterations"])
    for method in ("one_at_a_time", "scipy", "gd"):
        if method not in per_size[0]:
            continue
        rows = [r[method] for r in per_size]
        scale = args.replicates / args.gd_replicates if method == "gd" else 1.0  # GD: extrapolated
        t = dict(wall=scale * sum(r["wall"] for r in rows), cpu=scale * sum(r["cpu"] for r in rows),
                 peak_mib=max(r["peak_mib"] for r in rows), extrapolated_from_replicates=(
                     args.gd_replicates if method == "gd" else args.replicates))
        if method == "one_at_a_time":
            t["compile_wall"] = sum(r["compile_wall"] for r in rows)
            t["compile_cpu"] = sum(r["compile_cpu"] for r in rows)
            t["wall_with_compile"] = t["wall"] + t["compile_wall"]
            t["cpu_with_compile"] = t["cpu"] + t["compile_cpu"]
            t["sample_iterations"] = sum(int(r["one_at_a_time"]["iterations"]) * r["n"] for r in per_size)
        if method == "scipy":
            t["sample_evaluations"] = sum(r["scipy"]["nfev"] * r["n"] for r in per_size)
            t["sample_jacobians"] = sum(r["scipy"]["njev"] * r["n"] for r in per_size)
        if method == "gd":
            t["sample_iterations"] = scale * sum(r["gd"]["iterations"] * r["n"] for r in per_size)
        totals[method] = t
    for key, t in totals.items():
        t["fits_per_second"] = fits / t["wall"]
        work = t.get("sample_iterations") or t.get("sample_evaluations")
        if work:
            t["sample_iterations_per_second"] = work / (t["wall"] - t.get("compile_wait", 0.0))
    ratios = {}
    for base in ("scipy", "gd", "one_at_a_time"):
        if base not in totals:
            continue
        for key in ("batched_cold", "batched_warm"):
            ratios[f"{base}_over_{key}_wall"] = totals[base]["wall"] / totals[key]["wall"]
            ratios[f"{base}_over_{key}_cpu"] = totals[base]["cpu"] / totals[key]["cpu"]
    if "one_at_a_time" in totals:
        # per-fit cost, run time only (compile apart), batched over one at a time
        run_b = totals["batched_warm"]["wall"] - totals["batched_warm"]["compile_wait"]
        ratios["batched_run_over_one_at_a_time_run_wall"] = run_b / totals["one_at_a_time"]["wall"]
        ratios["batched_over_one_at_a_time_with_compile_wall"] = (
            totals["batched_cold"]["wall"] / totals["one_at_a_time"]["wall_with_compile"])
        for row in per_size:  # per size: fit_curve's bucket run time vs the loop's
            bucket = [b for b in results["batched_warm"]["info"]["buckets"] if b["length"] == row["n"]][0]
            row["batched_run_seconds"] = bucket["run_seconds"]
            row["batched_over_one_at_a_time_run"] = bucket["run_seconds"] / row["one_at_a_time"]["wall"]
    compile_share = {key: totals[key]["compile_wait"] / totals[key]["wall"] for key in ("batched_cold", "batched_warm")}
    compile_share["batched_cold_total_compile_over_wall"] = (totals["batched_cold"]["compile_total"]
                                                            / totals["batched_cold"]["wall"])

    out = dict(
        command="experiments/bench_baselines.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                             if k not in ("out",)),
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                     jax=jax.__version__, device=str(jax.devices()[0]), devices=jax.local_device_count()),
        workload=dict(preset=args.preset, k=model.k, k_star=setting.k_star, sizes=sizes.tolist(),
                      replicates=args.replicates, starts_per_fit=restarts, fits=fits, sum_n_times_replicates=sum_n,
                      gd_replicates=args.gd_replicates, gd_max_iter=args.gd_max_iter, scipy_x_scale=str(x_scale),
                      same_data_check_truth_mse_max_rel_diff=truth_gap),
        load=phases, totals=totals, ratios=ratios, compile_share=compile_share, quality=quality,
        batched_warm_same_fits_as_cold=bool(warm_same), batched_cold=results["batched_cold"],
        objectives={m: {str(n): v.tolist() for n, v in by_size.items()} for m, by_size in objective.items()},
        batched_warm=results["batched_warm"], per_size=per_size)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write_json(args.out, out)

    print(f"\n{fits} fits ({restarts} starts each), sum n x replicates = {sum_n}; load {phases}")
    print(f"{'method':16s} {'wall s':>9s} {'cpu s':>9s} {'fits/s':>8s} {'sample-it/s':>12s} {'compile s':>10s} "
          f"{'peak MiB':>9s} {'within 1e-6':>11s}")
    for key, t in totals.items():
        q = quality.get("batched" if key.startswith("batched") else key, {})
        comp = t.get("compile_wait", t.get("compile_wall", 0.0))
        print(f"{key:16s} {t['wall']:9.1f} {t['cpu']:9.1f} {t['fits_per_second']:8.3f} "
              f"{t.get('sample_iterations_per_second', float('nan')):12.3g} {comp:10.1f} {t['peak_mib']:9.0f} "
              f"{q.get('within_1e6_of_best', float('nan')):11.3f}")
    print(json.dumps({k: round(v, 3) for k, v in {**ratios, **compile_share}.items()}, indent=1))


if __name__ == "__main__":
    main()
