"""Starts and stopping through the engine (issue 13 item 1): `fit_curve` with successive halving
(`prune_at` / `prune_keep`) and LM's noise-level stopping rule (`noise_window` / `noise_ftol`) against every
start run to the iteration limit, side by side in one process, same fits (seed, data, starts).

    export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false OMP_NUM_THREADS=1
    taskset -c 1 .venv/bin/python experiments/prune_starts.py --preset hierarchical-linear \
        --sizes 100,1000,10000 --replicates 8 --max-iter 2000 --policy prune:300:8 --policy noise:100:1e-4 \
        --policy noise:100:1e-4+prune:300:8 --out experiments/results/prune_starts/hierarchical-linear.json

Policies: `all` (always run first: every start to `--max-iter`, no rule), and `--policy` strings made of
`prune:T:K` (pruned at iteration T to each fit's K best) and `noise:M:C` (LM stops once the objective fell by
less than C L / n over M iterations) joined by `+`. For each policy it records per fit the objective, status and iterations, and the wall time of the call (compile excluded: `seconds -
compile_seconds`). Reported per policy and size: the fraction of fits that stop on a stopping rule
(converged, not the iteration limit), the fraction within 0.1 sigma^2 / n of the best objective any policy
found for that fit (the pool: every policy's starts are the same 32, so `all` is that pool's best unless a
pruned run stops elsewhere), the fraction exactly equal to `all`'s, the iterations and the run time against
`all`. Written atomically after each policy, so a run stopped midway keeps what it finished (`--resume`).

`--analyse A.json B.json ... --out M.json` pools result files of one study (same preset, sizes, replicates,
seed and restarts; any `--max-iter`): every run's fits share data and starts, so the best objective over all
of them is the best known minimum, and each (file, policy) is summarised against it, labelled
`max_iter=<its budget> <policy>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import jaxmoe
from jaxmoe.estimation.solvers import get_solver, noise_scaled_gtol
from jaxmoe.estimation.status import CONVERGED_NOISE
from shared import positive_ints  # beside this script


def _policy(text: str) -> dict:
    """`prune:T:K` and `noise:M:C` joined by '+' -> the fit_curve / LMConfig options of that policy."""
    out = {}
    for part in text.split("+"):
        kind, _, rest = part.partition(":")
        try:
            a, b = rest.split(":")
            if kind == "prune" and int(a) >= 1 and int(b) >= 1:
                out.update(prune_at=int(a), prune_keep=int(b))
                continue
            if kind == "noise" and int(a) >= 1 and float(b) > 0:
                out.update(noise_window=int(a), noise_ftol=float(b))
                continue
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"{part!r}: must be prune:T:K or noise:M:C (T, K, M integers >= 1, C > 0)")
    return out


def _write(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)  # atomic: a crash leaves the previous file


def run_policy(setting, args, policy: dict) -> dict:
    rule = {k: policy[k] for k in ("noise_window", "noise_ftol") if k in policy}
    solver = get_solver("lm", max_iter=args.max_iter, gtol=noise_scaled_gtol(setting.sigma), **rule)
    kw = {k: policy[k] for k in ("prune_at", "prune_keep") if k in policy}
    fit = jaxmoe.fit_curve(setting, args.sizes, args.replicates, seed=args.seed, solver=solver,
                           restarts=args.restarts, **kw)
    info = fit.info
    return dict(objective=fit.objective.tolist(), status=fit.status.tolist(), iterations=fit.iterations.tolist(),
                converged=fit.converged.tolist(), iterations_total=info["iterations_total"],
                sample_iterations=info["sample_iterations"], seconds=info["seconds"],
                run_seconds=info["seconds"] - info["compile_seconds"])


def summarise(setting, sizes, runs: dict, base: str = "all") -> dict:
    best = np.min([np.asarray(r["objective"]) for r in runs.values()], axis=0)  # (S, R): the pool's best
    tol = 0.1 * setting.sigma ** 2 / np.asarray(sizes, float)[:, None]
    base = runs[base]
    out = {}
    for name, r in runs.items():
        obj = np.asarray(r["objective"])
        out[name] = dict(
            converged=np.mean(r["converged"], axis=1).round(3).tolist(),
            within_tol_of_best=np.mean(obj <= best + tol, axis=1).round(3).tolist(),
            equal_to_all=np.mean(obj == np.asarray(base["objective"]), axis=1).round(3).tolist(),
            converged_overall=round(float(np.mean(r["converged"])), 3),
            noise_rule_overall=round(float(np.mean(np.asarray(r["status"]) == CONVERGED_NOISE)), 3),
            within_tol_overall=round(float(np.mean(obj <= best + tol)), 3),
            iterations_ratio=round(r["iterations_total"] / base["iterations_total"], 3),
            sample_iterations_ratio=round(r["sample_iterations"] / base["sample_iterations"], 3),
            run_seconds=round(r["run_seconds"], 1),
            run_time_ratio=round(r["run_seconds"] / base["run_seconds"], 3))
    return out


def analyse(paths: list[str], out: str) -> int:
    """Pool result files of one study (module docstring) and summarise every (file, policy) against the pool."""
    runs, metas = {}, []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        meta = dict(data["meta"])
        budget = meta.pop("max_iter")
        metas.append(meta)
        runs.update({f"max_iter={budget} {name}": r for name, r in data["runs"].items()})
    if any(m != metas[0] for m in metas):
        print(f"--analyse: the files are not one study ({metas}); pool only runs of the same fits", file=sys.stderr)
        return 2
    meta = metas[0]
    base = max((k for k in runs if k.endswith(" all")), key=lambda k: int(k.split()[0].split("=")[1]))
    summary = summarise(jaxmoe.get_preset(meta["preset"]), meta["sizes"], runs, base=base)
    _write(out, dict(meta=meta, files=paths, ratios_against=base, summary=summary))
    print(markdown_table(meta, summary, base))
    return 0


def markdown_table(meta: dict, summary: dict, base: str) -> str:
    """One row per (budget, policy): stopped on a rule (per n and overall), of which by the noise rule, within
    0.1 sigma^2 / n of the pool's best (per n and overall), iterations and run time against `base`."""
    sizes = "/".join(f"{n:g}" for n in meta["sizes"])
    lines = [f"{meta['preset']}, {meta['replicates']} replicates x n = {sizes}, best of {meta['restarts']} starts; "
             f"ratios against `{base}`", "",
             "| budget, policy | stop on a rule (per n) | overall | by the noise rule | within 0.1 s²/n of the pool "
             "(per n) | overall | iterations | run time (s, ratio) |", "|---|---|---|---|---|---|---|---|"]
    for name, v in summary.items():
        per_n = lambda a: " / ".join(f"{x:.3g}" for x in a)
        lines.append(f"| {name} | {per_n(v['converged'])} | {v['converged_overall']:.3f} | {v['noise_rule_overall']:.3f} | "
                     f"{per_n(v['within_tol_of_best'])} | {v['within_tol_overall']:.3f} | {v['iterations_ratio']:.2f} | "
                     f"{v['run_seconds']:.0f} ({v['run_time_ratio']:.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--analyse":
        files = [a for a in argv[1:] if a != "--out"]
        if "--out" not in argv or len(files) < 2:
            print("--analyse: give result files and --out M.json (e.g. --analyse a.json b.json --out m.json)",
                  file=sys.stderr)
            return 2
        out = argv[argv.index("--out") + 1]
        return analyse([f for f in files if f != out], out)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True, choices=jaxmoe.PRESET_NAMES)
    p.add_argument("--sizes", type=positive_ints, default=[100, 1000, 10000])
    p.add_argument("--replicates", type=int, default=8)
    p.add_argument("--restarts", type=int, default=32)
    p.add_argument("--max-iter", type=int, default=2000, dest="max_iter")
    p.add_argument("--policy", action="append", default=[], help="prune:T:K, noise:M:C or both joined by '+' "
                   "(repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="keep the policies already in --out")
    args = p.parse_args(argv)
    for name in ("replicates", "restarts", "max_iter"):
        if getattr(args, name) < 1:
            print(f"{name}={getattr(args, name)}: must be an integer >= 1", file=sys.stderr)
            return 2
    for text in args.policy:
        try:
            _policy(text)
        except argparse.ArgumentTypeError as err:
            print(f"--policy={err}", file=sys.stderr)
            return 2
    policies = ["all"] + args.policy
    setting = jaxmoe.get_preset(args.preset)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = dict(preset=args.preset, sizes=args.sizes, replicates=args.replicates, restarts=args.restarts,
                max_iter=args.max_iter, seed=args.seed, sigma=setting.sigma)
    runs = {}
    if args.resume and os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        if old["meta"] != meta:
            print(f"--resume: {args.out} holds another study ({old['meta']}); use another --out", file=sys.stderr)
            return 2
        runs = old["runs"]
    for name in policies:
        if name in runs:
            continue
        t0 = time.perf_counter()
        runs[name] = run_policy(setting, args, {} if name == "all" else _policy(name))
        print(f"{args.preset} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        summary = summarise(setting, args.sizes, runs) if "all" in runs else {}
        _write(args.out, dict(meta=meta, runs=runs, summary=summary))
    print(json.dumps(summarise(setting, args.sizes, runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
