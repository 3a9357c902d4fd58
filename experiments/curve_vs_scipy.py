"""The standard over-fitted curve, at the engine's defaults, against per-fit SciPy and against an older engine.

    git worktree add /tmp/old765 765b23f
    .venv/bin/python experiments/curve_vs_scipy.py --old /tmp/old765 --scipy-replicates 2 \
        --out experiments/results/curve_vs_scipy.json

Issue 13's third target: "the standard over-fitted curve (softmax-ridge, 7 sizes 10^2..10^5, 16 replicates,
default starts) >= 10x faster than per-fit SciPy trf given the same starts and data, at statistically equal
objective; >= 3x faster than today's engine". Workload: softmax-ridge, k = k* + 1 = 3, 7 sizes log-spaced
10^2..10^5, `--replicates` fits per size, `fit_curve`'s defaults: the best of 32 near-truth splits with noise
0.3, LM with a budget of 1000 iterations and the noise-level stopping rule (window 100, c = 1e-4).

- **this engine**: `fit_curve(setting, sizes, replicates, seed)` in a fresh process (`use_all_cores()`, as the
  CLI), cold (an empty compilation-cache folder), then warm (a second fresh process given that folder).
- **the old engine** (`--old`, a checkout; 765b23f is the engine issue 13 was filed against): the same call
  with its own defaults (the same 32 starts, a budget of 300, no noise rule, one CPU device), cold and warm
  (`JAX_COMPILATION_CACHE_DIR`), fresh processes.
- **SciPy**: `least_squares(method="trf")` per start in this process (one core), analytic NumPy Jacobian,
  on exactly the data and starts of this engine's fits (`fit_data`, `fit_starts` for each fit's key; the
  truth's MSE is checked against the engine's), on the first `--scipy-replicates` replicates of each size;
  its whole-curve time is that x replicates / scipy-replicates (marked "extrapolated"). Its rules are LM's:
  `max_nfev` 1000, gtol / ftol / xtol as `bench_baselines.py`, and the same noise-level rule through
  least_squares' `callback` (stop once the MSE fell by less than 1e-4 MSE / n over the last 100 iterations).
  A researcher's process pool would run it on both cores: the ratio against SciPy's time / 2 (perfect
  scaling, an upper bound on the pool's speed) is reported too.

Objectives, per fit of SciPy's replicates: d = (L_SciPy - L_engine) / (sigma^2 / n) on the MSE of each best
start, recomputed by one NumPy function from the final parameters; "statistically equal" is |d| <= 0.1 (the
solver_study tolerance), and the fractions d < -0.1 (SciPy lower) and d > 0.1 (the engine lower) are reported
with a sign test. Writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings

from shared import positive_int, positive_ints

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)

CURVE = r"""
import json, os, sys, time
import numpy as np
import jax
jax.config.update("jax_platforms", "cpu")
import jaxmoe
if hasattr(jaxmoe, "use_all_cores"):
    jaxmoe.use_all_cores()
sizes, reps, seed = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
setting = jaxmoe.get_preset("softmax-ridge")
t0 = time.perf_counter()
fit = jaxmoe.fit_curve(setting, sizes, reps, seed=seed)
wall = time.perf_counter() - t0
info = fit.info
leaves = jax.tree_util.tree_leaves(fit.params)
flat = lambda i, r: np.concatenate([np.asarray(leaf[i, r]).ravel() for leaf in leaves]).tolist()
print("RESULT" + json.dumps(dict(
    wall=wall, compile_waited=info["compile_seconds"], devices=info["devices"],
    sample_iterations=info["sample_iterations"], converged=float(fit.converged_fraction),
    objective=np.asarray(fit.objective).tolist(), objective_truth=np.asarray(fit.objective_truth).tolist(),
    params=[[flat(i, r) for r in range(reps)] for i in range(len(sizes))])))
"""


def _env(engine: str, cache: str) -> dict:
    env = dict(os.environ, PYTHONPATH=engine, JAX_PLATFORMS="cpu", JAXMOE_CACHE_DIR=cache,
               JAX_COMPILATION_CACHE_DIR=cache)  # the old engine has no cache of its own
    env.pop("XLA_FLAGS", None)
    return env


def curve_run(engine: str, cache: str, sizes, replicates: int, seed: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CURVE, json.dumps(sizes), str(replicates), str(seed)],
                          env=_env(engine, cache), capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: fit_curve failed:\n{proc.stderr[-3000:]}")
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][6:])


def noise_rule(n: int, window: int = 100, c: float = 1e-4):
    """least_squares callback: StopIteration once MSE_{t-m} - MSE_t < c MSE_t / n (LM's noise-level rule; the
    residuals are (y - f) / sqrt(n), so SciPy's cost is MSE / 2)."""
    history = []

    def callback(intermediate_result):
        history.append(2.0 * float(intermediate_result.cost))
        if len(history) > window and history[-window - 1] - history[-1] < c * history[-1] / n:
            raise StopIteration
    return callback


def run_scipy(sizes, replicates: int, scipy_replicates: int, seed: int, runs: dict, reuse=None) -> list:
    """SciPy on the first `scipy_replicates` replicates of each size: per size wall / CPU seconds, nfev,
    statuses, the best start's parameters and MSE per fit, and (`engine_mse`) each run of `runs`' MSE on the
    same fits, by the same NumPy function. `reuse`: an earlier result's SciPy rows for the same study, taken
    as they are (SciPy's fits do not depend on the engine); only `engine_mse` is recomputed."""
    import functools
    import jax
    import jax.numpy as jnp
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxmoe
    from jaxmoe.estimation import fit_data, fit_keys, fit_starts
    from jaxmoe.estimation.options import default_starts
    from jaxmoe.estimation.problem import ravel
    sys.path.insert(0, HERE)
    from bench_baselines import NumpyRidgeMoE, scipy_fit
    setting = jaxmoe.get_preset("softmax-ridge")
    model = setting.fitted_model()
    restarts, noise = default_starts(True)
    lower, upper = (np.asarray(ravel(b)[0]) for b in model.bounds(True))
    npm = NumpyRidgeMoE(model.k, setting.d)
    truth = runs["engine_cold"]["objective_truth"]
    out = []
    for i, n in enumerate(sizes):
        keys = fit_keys(jax.random.PRNGKey(seed), jnp.asarray([n] * replicates), jnp.arange(replicates))
        data_of = functools.partial(fit_data, setting=setting, length=n)
        x, y, _, tmse = jax.vmap(data_of)(keys, jnp.asarray([n] * replicates))
        starts, _ = jax.vmap(functools.partial(fit_starts, setting=setting, model=model, init="near_truth",
                                               restarts=restarts, noise=noise, scale=3.0))(keys)
        same = float(np.max(np.abs(np.asarray(tmse) - np.asarray(truth[i])) / np.asarray(truth[i])))
        x, y, starts = np.asarray(x), np.asarray(y), np.asarray(starts)
        row = dict(n=n, same_data_truth_mse_max_rel_diff=same, nfev=0, status={}, best=[], best_mse=[])
        if reuse is not None:
            kept = {k: reuse[i][k] for k in ("nfev", "status", "best", "best_mse", "wall", "cpu")}
            assert reuse[i]["n"] == n and len(kept["best"]) == scipy_replicates, "reused SciPy rows: other study"
            row.update(kept, reused=True)
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for r in range(0 if reuse is not None else scipy_replicates):
                fits = [scipy_fit(npm, x[r], y[r], starts[r, m], lower, upper, 1.0, max_nfev=1000,
                                  callback=noise_rule(n)) for m in range(restarts)]
                for _, nfev, _, status in fits:
                    row["nfev"] += nfev
                    row["status"][str(status)] = row["status"].get(str(status), 0) + 1
                mses = [npm.mse(theta, x[r], y[r]) for theta, _, _, _ in fits]
                row["best_mse"].append(min(mses))
                row["best"].append(fits[int(np.argmin(mses))][0].tolist())
        if reuse is None:
            row["wall"], row["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        row["engine_mse"] = {name: [npm.mse(np.asarray(run["params"][i][r]), x[r], y[r])
                                    for r in range(scipy_replicates)] for name, run in runs.items()}
        print(json.dumps({k: v for k, v in row.items() if k in ("n", "wall", "nfev", "status")}), flush=True)
        out.append(row)
    return out


def compare(scipy_rows, name: str, sigma: float) -> dict:
    """d = (L_SciPy - L_engine) / (sigma^2 / n) per fit of SciPy's replicates (module docstring)."""
    d = []
    for row in scipy_rows:
        for mse, mine in zip(row["best_mse"], row["engine_mse"][name]):
            d.append((mse - mine) / (sigma ** 2 / row["n"]))
    lower, higher = sum(v < -0.1 for v in d), sum(v > 0.1 for v in d)
    decided = lower + higher  # two-sided sign test on the fits that differ by more than 0.1 sigma^2 / n
    tail = sum(math.comb(decided, j) for j in range(min(lower, higher) + 1))
    p = min(1.0, 2 * tail / 2 ** decided) if decided else 1.0
    return dict(fits=len(d), equal_within_0_1=sum(abs(v) <= 0.1 for v in d) / len(d), scipy_lower=lower / len(d),
                engine_lower=higher / len(d), sign_test_p=p, d_min=min(d), d_max=max(d),
                d_median=sorted(d)[len(d) // 2])


def _reused_scipy_rows(ap, args, sizes) -> list:
    """The SciPy rows of `--scipy-from`, checked to be of this study (else one line and exit 2)."""
    try:
        with open(args.scipy_from) as f:
            earlier = json.load(f)
        study = (earlier["sizes"], earlier["replicates"], earlier["scipy_replicates"])
        rows = earlier["scipy"]["rows"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        ap.error(f"scipy-from={args.scipy_from}: must be an --out of this script ({err!r})")
    if study != (sizes, args.replicates, args.scipy_replicates):
        ap.error(f"scipy-from={args.scipy_from}: must be of the same study (sizes, replicates, scipy-replicates "
                 f"{study}, not {(sizes, args.replicates, args.scipy_replicates)})")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=None, help="checkout of the engine to compare with (omit: skip it)")
    ap.add_argument("--replicates", type=positive_int, default=16)
    ap.add_argument("--scipy-replicates", type=positive_int, default=2)
    ap.add_argument("--sizes", type=positive_ints, default=[100, 316, 1000, 3162, 10000, 31623, 100000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scipy-from", default=None,
                    help="an earlier --out of the same study: reuse its SciPy fits and times (skip SciPy)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "curve_vs_scipy.json"))
    args = ap.parse_args()
    sizes = args.sizes
    if args.scipy_replicates > args.replicates:  # every check before any work (one line, exit 2)
        ap.error(f"scipy-replicates={args.scipy_replicates}: must be in [1, replicates = {args.replicates}]")
    reuse = _reused_scipy_rows(ap, args, sizes) if args.scipy_from else None
    runs = {}
    for name, path in [("engine", NEW)] + ([("old", os.path.abspath(args.old))] if args.old else []):
        cache = tempfile.mkdtemp(prefix="curve-cache-")
        for phase in ("cold", "warm"):
            runs[f"{name}_{phase}"] = curve_run(path, cache, sizes, args.replicates, args.seed)
            print(name, phase, round(runs[f"{name}_{phase}"]["wall"], 1), "s", flush=True)
    scipy_rows = run_scipy(sizes, args.replicates, args.scipy_replicates, args.seed, runs, reuse)
    scale = args.replicates / args.scipy_replicates
    scipy_wall = scale * sum(r["wall"] for r in scipy_rows)
    ratios = {f"scipy_over_{k}": scipy_wall / v["wall"] for k, v in runs.items()}
    ratios.update({f"scipy_2_processes_over_{k}": scipy_wall / 2 / v["wall"] for k, v in runs.items()})
    if args.old:
        ratios.update({f"old_over_engine_{p}": runs[f"old_{p}"]["wall"] / runs[f"engine_{p}"]["wall"]
                       for p in ("cold", "warm")})
    from jaxmoe import get_preset
    sigma = float(get_preset("softmax-ridge").sigma)
    quality = {k: compare(scipy_rows, k, sigma) for k in runs}
    result = dict(command=" ".join(sys.argv), cores=os.cpu_count(), loadavg=os.getloadavg(), sizes=sizes,
                  replicates=args.replicates, scipy_replicates=args.scipy_replicates, scipy_from=args.scipy_from,
                  scipy=dict(wall_extrapolated=scipy_wall, rows=scipy_rows), ratios=ratios, objectives=quality,
                  runs={k: {kk: vv for kk, vv in v.items() if kk not in ("params",)} for k, v in runs.items()})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    print(json.dumps(dict(ratios=ratios, objectives=quality,
                          walls={k: v["wall"] for k, v in runs.items()}, scipy_wall=scipy_wall), indent=1))


if __name__ == "__main__":
    main()
