"""The `jaxmoe` command line (also `python -m jaxmoe`).

Subcommands: `sweep` (a rate study from a TOML config or a preset, resumable; `jaxmoe.sweeps`), `report`
(tables and plots of a sweep folder), `table1` (every row of Table 1 as sweeps, one report with verdicts), `identify` (identifiability verdicts), `bound` (the inverse-bound profile,
two-point lower bound and verdict of a truth; `jaxmoe.bounds`), `presets` (the Table 1 truths).
One function per subcommand, `cmd_<name>(args) -> int`, registered in `build_parser()` by an
`add_<name>_parser(subparsers)` function; to add one, write both and append the adder to `SUBCOMMANDS`.
Parsing and printing live here, the work in the library. Bad input prints one line `jaxmoe: error: ...` on
stderr and exits 2; an interrupted sweep (Ctrl-C) says where its saved chunks are and exits 130, at once even
while compiling (as a program: `main()` without argv; see `_leave_now`). Output
whose reader has gone (`jaxmoe presets | head -1`) ends the command quietly with exit code 0: the reader
chose to stop reading, which is not an error of the command (a sweep's chunks are saved before it prints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

import jaxmoe
from jaxmoe import identifiability as ident
from jaxmoe import sweeps
from jaxmoe.validation import JaxMoEInputError
from jaxmoe.families.cells import check_r
from jaxmoe.models.experts import get_expert
from jaxmoe.models.gates import get_router
from jaxmoe.sweeps.config import check_sizes
from jaxmoe.sweeps.distributed import run_distributed
from jaxmoe.sweeps.store import parse_shard


INTERRUPTED = 130  # the exit code of a sweep stopped by Ctrl-C


class CLIError(Exception):
    """A usage error: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, no usage dump, no SystemExit traceback
        raise CLIError(f"{message} (see {self.prog} --help)")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _print_json(obj: Any) -> None:
    print(json.dumps(_jsonable(obj), indent=2))


# ---------------------------------------------------------------- identify
def add_identify_parser(sub) -> None:
    p = sub.add_parser("identify", help="strong identifiability / algebraic independence verdict (Definitions 1, 2) and PDE checks")
    p.add_argument("--expert", default="sigmoid", help="expert name (linear, sigmoid, tanh, gelu, relu, polynomial2, ...) or package.module:name of a jaxmoe.Expert (imported from the working directory)")
    p.add_argument("--router", default=None, help="router name (linear, tanh, sigmoid, gelu, mlp-tanh, ...) or package.module:name of a jaxmoe.Router; default: softmax gating")
    p.add_argument("--temperature", action="store_true", help="dense-to-sparse gate exp(g/tau): tau is a parameter (eq. 12, 17)")
    p.add_argument("--hierarchical", action="store_true", help="two-level model: F = exp(omega^T x) exp(g(x, beta1)) h (eq. 28)")
    p.add_argument("--case", default=None, help="a paper case (see --list-cases) or 'all' for the table of verdicts")
    p.add_argument("--list-cases", action="store_true", help="list the paper cases and exit")
    p.add_argument("--pde", action="store_true", help="print the PDE residual table (eqs. 9, 15, 28) instead")
    p.add_argument("-d", "--dim", type=int, default=2, help="input dimension d (default 2; see the docs for why not 1)")
    p.add_argument("--points", type=int, default=2, help="distinct parameter points (default 2)")
    p.add_argument("--inputs", type=int, default=None, help="inputs x drawn (default max(200, 3 x functions))")
    p.add_argument("--range", type=float, default=4.0, dest="input_range", help="inputs ~ U[-R, R]^d (default 4)")
    p.add_argument("--tol", type=float, default=None, help="relative singular-value threshold (default 1e-10)")
    p.add_argument("--margin", type=float, default=None, help="factor either side of the threshold (default 100)")
    p.add_argument("--no-merge", action="store_true", help="test the list of derivatives, not the set (keep duplicates)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_identify)


def cmd_identify(args) -> int:
    if args.list_cases:
        rows = {k: {"expected": c.expected, **c._asdict()} for k, c in ident.PAPER_CASES.items()}
        if args.json:
            _print_json(rows)
        else:
            for k, c in ident.PAPER_CASES.items():
                print(f"{k:<30} {c.expected:<12} {c.why}")
        return 0
    if args.pde:
        rows = ident.pde_table(d=args.dim, seed=args.seed)
        if args.json:
            _print_json([{**r._asdict(), "holds": r.holds} for r in rows])
        else:
            print(ident.format_pde_table(rows))
        return 0
    kwargs = dict(d=args.dim, n_points=args.points, n_inputs=args.inputs, input_range=args.input_range,
                  merge_duplicates=not args.no_merge, seed=args.seed)
    if args.tol is not None:
        kwargs["tol"] = args.tol
    if args.margin is not None:
        kwargs["margin"] = args.margin
    if args.case is not None:
        names = list(ident.PAPER_CASES) if args.case == "all" else [args.case]
        for n in names:
            if n not in ident.PAPER_CASES:
                raise JaxMoEInputError("case", n, f"must be 'all' or one of {list(ident.PAPER_CASES)}")
        reports = ident.paper_verdicts(names, **kwargs)
        if args.json:
            _print_json({n: {"expected": ident.PAPER_CASES[n].expected, **r.to_dict()} for n, r in reports.items()})
        elif len(names) == 1:
            print(f"case {names[0]} (theory: {ident.PAPER_CASES[names[0]].expected})")
            print(reports[names[0]].summary())
        else:
            print(f"{'case':<30} {'verdict':<13} {'theory':<12} {'min sv':>8} {'decades':>7}  first relation")
            for n, r in reports.items():
                first = str(r.relations[0]) if r.relations else (f"0 = {r.zero_functions[0]}" if r.zero_functions else "")
                print(f"{n:<30} {r.verdict:<13} {ident.PAPER_CASES[n].expected:<12} {r.singular_values[-1]:8.1e} "
                      f"{r.margin_decades:7.1f}  {first[:70]}")
        return 0
    # a user's "package.module:name" is imported from the working directory (jaxmoe.models.user)
    expert = get_expert(args.expert, "--expert")
    router = None if args.router is None else get_router(args.router, "--router")
    report = ident.check_independence(expert, router, temperature=args.temperature, hierarchical=args.hierarchical, **kwargs)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
    return 0


# ---------------------------------------------------------------- presets
def add_presets_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the Table 1 presets: row, theory, why, true parameters")
    p.add_argument("names", nargs="*", help="preset names (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_presets)


def _truth_dict(truth) -> dict:
    return {k: _jsonable(v) for k, v in truth._asdict().items()}


def cmd_presets(args) -> int:
    names = args.names or list(jaxmoe.PRESET_NAMES)
    settings = [jaxmoe.get_preset(n) for n in names]
    if args.json:
        _print_json([
            {"name": s.name, "row": s.row, "theory": s.theory, "why": s.why, "model": type(s.model).__name__,
             "expert": s.model.expert.name, "k_star": s.k_star, "k_fit": s.k_fit, "d": s.d, "sigma": s.sigma,
             "truth": _truth_dict(s.truth)}
            for s in settings
        ])
        return 0
    for s in settings:
        print(f"{s.name}\n  row:    {s.row}\n  theory: {s.theory}\n  why:    {s.why}")
        print(f"  model:  {type(s.model).__name__}, expert {s.model.expert.name}, k* = {s.k_star}, k fit = {s.k_fit}, sigma = {s.sigma}")
        for k, v in _truth_dict(s.truth).items():
            print(f"  {k:<6}  {json.dumps(v)}")
    return 0


# ---------------------------------------------------------------- bound
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number > 0")
    return value


def _r_list(text: str) -> list[float]:
    return [_positive_float(part.strip()) for part in text.split(",")]  # an empty part is refused there


def _per_decade_list(text: str) -> list[int]:
    return sorted({_positive_int(part.strip()) for part in text.split(",")})


def add_bound_parser(sub) -> None:
    p = sub.add_parser("bound", help="inverse-bound profile omega(eps), two-point lower bound LB(n) and verdict",
                       description="omega(eps) = inf ||f_G - f*|| over G with D(G, G*) >= eps (jaxmoe.bounds), the "
                                   "two-point curve it gives and the verdict of the rule in jaxmoe/bounds/verdict.py.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("config", nargs="?", help="a sweep config (TOML): its truth, fitted k, noise and input law")
    src.add_argument("--preset", help=f"one of {list(jaxmoe.PRESET_NAMES)}")
    p.add_argument("--loss", help="a key of the family's LOSSES (default: the loss its rate curve reports)")
    p.add_argument("--r", type=_r_list, help="r of a power-r loss (>= 1), or several (1,2,3,4): one profile each, "
                                             "one verdict over all")
    p.add_argument("--k", type=_positive_int, help="fitted atoms (default: the setting's k_fit; >= k*)")
    p.add_argument("--divide-out", action="store_true",
                   help="the loss on the quotient by the symmetries the family can divide out (the linear router's "
                        "scaling): MoEFamily.divide_out_symmetries")
    p.add_argument("--eps-max", type=_positive_float, default=1.0)
    p.add_argument("--eps-min", type=_positive_float, default=1e-6)
    p.add_argument("--per-decade", type=_per_decade_list, default=[8],
                   help="eps per decade (8), or several (8,16): one run per grid, pooled on the finest "
                        "(jaxmoe.bounds.inverse_bound_on_grids; the branch a continuation follows depends on its step)")
    p.add_argument("--rays", action="store_true",
                   help="pool the measures with their rays: each moved along its offset from the truth to every "
                        "smaller eps (upper bounds still; the profile's from_ray says which eps a ray sets): "
                        "jaxmoe.bounds.pool_profiles")
    p.add_argument("--starts", type=_positive_int, default=8)
    p.add_argument("--iterations", type=_positive_int, default=200)
    p.add_argument("--optimiser", default="lbfgs",
                   help=f"one of {sorted(jaxmoe.bounds.OPTIMISERS)}: lbfgs (a penalty on log D < log eps), "
                        "gauss_newton (LM on the quadrature residuals, the constraint exact; better near the truth "
                        "on the flat over-fitted landscapes) or both (each start by each, one envelope): "
                        "jaxmoe/bounds/profile.py")
    p.add_argument("--difference", default="direct",
                   help=f"one of {list(jaxmoe.bounds.DIFFERENCES)}: how f_G - f* is computed; path integrates the "
                        "directional derivative from the split truth, so its round-off falls with |G - G0| instead "
                        "of staying at 1e-16 ||f*||: jaxmoe/bounds/difference.py")
    p.add_argument("--continuation", default="rescale",
                   help=f"one of {list(jaxmoe.bounds.CONTINUATIONS)}: how each eps's starts come from the larger "
                        "eps; secant extrapolates every offset coordinate as a power of eps through the last two "
                        "solutions (kept where it starts lower): jaxmoe/bounds/profile.py")
    p.add_argument("--sizes", type=_sizes, help="sample sizes of the two-point curve (default 41 from 1e2 to 1e12)")
    p.add_argument("--m-theory", type=_positive_float, default=1.0, help="the exponent the theory predicts (1)")
    p.add_argument("--out", help="folder for bound.json and bound.png / bound.pdf (created)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_bound)


def _bound_setting(args):
    if args.preset is not None:
        return jaxmoe.get_preset(args.preset)
    if not os.path.isfile(args.config):
        raise JaxMoEInputError("CONFIG", args.config, "no such file")
    return sweeps.load_config(args.config).setting()


def _check_bound_args(args, setting) -> tuple[str, dict]:
    """Every option checked before any work: the loss, r, k, eps grids and sizes (one line naming the field)."""
    k = setting.k_fit if args.k is None else args.k
    if k < setting.k_star:
        raise JaxMoEInputError("--k", k, f"must be >= k* = {setting.k_star}")
    model = setting.fitted_model(k)
    loss = args.loss or next(iter(model.curve_losses().values()))
    jaxmoe.bounds.loss_function(model, setting.truth_params(), loss)  # names the loss field if unknown
    for r in args.r or []:
        check_r(r)
    if args.optimiser not in jaxmoe.bounds.OPTIMISERS:
        raise JaxMoEInputError("--optimiser", args.optimiser, f"must be one of {sorted(jaxmoe.bounds.OPTIMISERS)}")
    if args.difference not in jaxmoe.bounds.DIFFERENCES:
        raise JaxMoEInputError("--difference", args.difference, f"must be one of {list(jaxmoe.bounds.DIFFERENCES)}")
    if args.continuation not in jaxmoe.bounds.CONTINUATIONS:
        raise JaxMoEInputError("--continuation", args.continuation,
                               f"must be one of {list(jaxmoe.bounds.CONTINUATIONS)}")
    if args.eps_min >= args.eps_max:
        raise JaxMoEInputError("--eps-min", args.eps_min, f"must be < --eps-max = {args.eps_max}")
    if args.out and os.path.exists(os.path.join(args.out, "bound.json")):  # never overwrite a finished study
        raise JaxMoEInputError("--out", args.out, "holds a bound.json already: choose another folder or remove it")
    if args.sizes is not None:
        args.sizes = check_sizes("--sizes", args.sizes)
        if len(args.sizes) < 2:
            raise JaxMoEInputError("--sizes", args.sizes, "must be at least two sample sizes (a curve)")
    return loss, {n: jaxmoe.bounds.default_eps(args.eps_max, args.eps_min, n) for n in args.per_decade}


def _profile_json(prof) -> dict:
    return {"eps": prof.eps, "omega": prof.omega, "spread": prof.spread, "kept_starts": prof.kept_starts,
            "status": [jaxmoe.bounds.START_STATUS[int(s)] for s in prof.start_status.min(axis=1)],
            "resolvable": prof.resolvable, "at_floor": prof.at_floor, "floor": prof.floor, "exponent": prof.exponent,
            "from_ray": prof.from_ray,
            "from_run": prof.from_run_names}


def _curve_json(curve) -> dict | None:
    return None if curve is None else {"n": curve.n, "eps_n": curve.eps_n, "local_slope": curve.local_slope,
                                       "lower_bound": curve.lower_bound}


def cmd_bound(args) -> int:
    setting = _bound_setting(args)
    loss, grids = _check_bound_args(args, setting)
    rs = args.r or [None]
    # one pool over every (r, grid) run: each r's envelope over the measures all runs found (each an upper bound
    # on omega), and the pool without each run of an r (the verdict's robustness)
    profiles = jaxmoe.bounds.inverse_bounds_on_grids(
        setting, grids, rs=rs, loss=loss, starts=args.starts, k=args.k, iterations=args.iterations,
        divide_out=args.divide_out, optimiser=args.optimiser, difference=args.difference,
        continuation=args.continuation, rays=args.rays)
    verdict = jaxmoe.bound_verdict(profiles, m_theory=args.m_theory, sigma=setting.sigma)
    curves = {r: jaxmoe.two_point_curve(p, setting.sigma, args.sizes) for r, p in profiles.items()
              if p.resolvable.any()}
    prof, curve = profiles[rs[0]], curves.get(rs[0])
    cond = jaxmoe.bounds.conditioning(setting, prof)
    out = {"setting": setting.name, "verdict": verdict.verdict, "why": verdict.why, "rate": verdict.rate,
           "exponents": {str(r): m for r, m in verdict.exponents.items()},
           "without_run": [{"r": r, "run": str(run), "verdict": v, "exponents": {str(q): m for q, m in e.items()}}
                           for (r, run), (v, e) in verdict.without_run.items()],
           "exponent": prof.exponent, "loss": loss, "r": rs[0], "k": prof.k, "optimiser": prof.optimiser,
           "difference": prof.difference, "continuation": prof.continuation, "per_decade": args.per_decade,
           "rays": args.rays, "floor": prof.floor,
           "not_identifiable": prof.not_identifiable, "divided_out": list(prof.divided_out),
           "profile": _profile_json(prof), "two_point": _curve_json(curve),
           "profiles": {str(r): {"profile": _profile_json(p), "two_point": _curve_json(curves.get(r))}
                        for r, p in profiles.items()},
           "conditioning": {f: getattr(cond, f) for f in ("fisher_min", "fisher_condition", "fisher_onset",
                                                          "symmetry_dimension", "constant", "asymptotic_eps", "onset")}}
    if args.out:
        out["files"] = _write_bound_files(args.out, out, profiles, curves, args.m_theory, setting.name, loss)
    if args.json:
        _print_json(out)
        return 0
    _print_bound(setting, loss, args, prof.eps, verdict, profiles, curves, cond, out.get("files"))
    return 0


def _write_bound_files(folder, out, profiles, curves, m_theory, name, loss) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "bound.json")
    sweeps.atomic_write_json(path, _jsonable(out))
    try:
        return [path] + jaxmoe.bounds.plot_bound(profiles, curves, os.path.join(folder, "bound"), m_theory,
                                                 f"{name}: {loss}")
    except ImportError:
        return [path]  # no matplotlib (the `plot` extra): the numbers are all in bound.json


def _print_bound(setting, loss, args, eps, verdict, profiles, curves, cond, files) -> None:
    rs = ", ".join("-" if r is None else f"{r:g}" for r in profiles)
    print(f"{setting.name}: loss {loss}, r = {rs}, {eps.size} eps from {args.eps_max:g} to {args.eps_min:g}, "
          f"{args.starts} starts" + (" (symmetries divided out)" if args.divide_out else ""))
    print(f"verdict: {verdict.verdict} ({verdict.why}); rate {verdict.rate}; exponents {verdict.exponents}")
    for (r, run), (v, exps) in verdict.without_run.items():
        print(f"  without run {run} (r = {r}): {v}, exponents {exps}")
    for r, prof in profiles.items():
        line = f"r = {r}: resolvable eps {int(prof.resolvable.sum())} of {eps.size}; at the float64 floor " \
               f"{int(prof.at_floor.sum())}"
        if r in curves:
            c = curves[r]
            line += f"; two-point eps_n = {c.eps_n[-1]:.3g} at n = {c.n[-1]:.0e} (local slope {c.local_slope[-1]:.3f})"
        print(line)
    print(f"conditioning: exact-fitted Fisher min eigenvalue {cond.fisher_min:.3g} (condition {cond.fisher_condition:.3g}, "
          f"{cond.symmetry_dimension} symmetry directions out); omega ~ {cond.constant} eps^{cond.exponent} below eps "
          f"{cond.asymptotic_eps}; predicted onset n / sigma^2 = {cond.onset}")
    if files:
        print("wrote " + ", ".join(files))


# ---------------------------------------------------------------- sweep
def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be comma-separated integers, e.g. 1000,4000,16000") from None
    return sizes


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= 1")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number >= 0")
    return value


def _shard(text: str):
    try:
        return parse_shard(text)
    except JaxMoEInputError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be I/N with 0 <= I < N, e.g. 0/4") from None


def add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a Monte Carlo rate study (TOML config or preset) into a folder; resumable",
        description="Fit every (sample size, replicate) of a rate study, chunk by chunk (one size bucket x all "
                    "replicates per chunk, each saved atomically), then write results.csv, summary.json and "
                    "rate_curves.png/.pdf into --out. The config schema is in jaxmoe/sweeps/config.py; an example "
                    "is experiments/configs/softmax-tanh.toml.")
    p.add_argument("config", nargs="?", help="TOML config file (a custom truth, or preset = NAME with overrides)")
    p.add_argument("--preset", help="run a preset instead of a config file (see `jaxmoe presets`)")
    p.add_argument("--out", help="output folder (default: sweeps/<name>)")
    p.add_argument("--sizes", type=_sizes, help="override the sample sizes, e.g. 1000,4000,16000")
    p.add_argument("--replicates", type=_positive_int, help="override the replicates per size")
    p.add_argument("--seed", type=int, help="override the seed (an integer in [0, 2^31))")
    p.add_argument("--k-fit", type=_positive_int, dest="k_fit", help="override the fitted number of atoms (>= k*)")
    p.add_argument("--sigma", type=_nonnegative_float, help="override the noise standard deviation")
    p.add_argument("--solver", help="override the solver: lm, lbfgs or adam")
    p.add_argument("--restarts", type=_positive_int, help="override the starts per fit (default 1 if k = k*, else 32)")
    p.add_argument("--init", help="override the initialisation: near_truth, mixed or random")
    p.add_argument("--prune-at", type=int, dest="prune_at", metavar="T",
                   help="successive halving: at iteration T keep each fit's --prune-keep best starts (0: off)")
    p.add_argument("--prune-keep", type=_positive_int, dest="prune_keep", metavar="K",
                   help="starts per fit that go on past --prune-at (default 8)")
    p.add_argument("--name", help="override the setting's name (the 'setting' column)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep already in --out (same config): keep its completed chunks")
    p.add_argument("--overwrite", action="store_true",
                   help="discard a previous sweep's files in --out (only the files a sweep writes) and start again")
    p.add_argument("--workers", type=_positive_int,
                   help="fit the chunks on a local Dask cluster of N worker processes (the `distributed` extra)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="fit the chunks on the running Dask cluster at ADDRESS (e.g. tcp://host:8786)")
    p.add_argument("--shard", metavar="I/N", type=_shard,
                   help="fit only shard I of N of the chunks (array jobs without a scheduler; shards share --out)")
    p.add_argument("--dry-run", action="store_true", help="validate, print the config and chunk plan, fit nothing")
    p.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with ETA on stderr (default: on for a terminal, off otherwise and with --json)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip rate_curves.png / .pdf (about 2 s of a short sweep; `jaxmoe report DIR` draws them)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (and no progress bar)")
    p.set_defaults(func=cmd_sweep)


def _sweep_config(args):
    if (args.config is None) == (args.preset is None):
        raise CLIError("give one of: a TOML config file, or --preset NAME (see jaxmoe sweep --help)")
    if args.preset is not None:
        config, source = sweeps.preset_config(args.preset), None
    else:
        config = sweeps.load_sweep(args.config)
        with open(args.config) as fh:
            source = fh.read()
    if args.sizes is not None:
        check_sizes("--sizes", args.sizes)
    config = config.replace(sizes=args.sizes, replicates=args.replicates, seed=args.seed, k_fit=args.k_fit,
                            sigma=args.sigma, solver=args.solver, restarts=args.restarts, init=args.init,
                            prune_at=args.prune_at, prune_keep=args.prune_keep, name=args.name)
    return config, source


def _dry_run(config, out: str, as_json: bool) -> int:
    """Print the config (or the grid's cells) and the chunk plan; fit nothing."""
    def chunks(c):
        return [{"chunk": p.index, "sizes": list(p.sizes), "fits": p.fits} for p in sweeps.plan_chunks(c)]

    if isinstance(config, sweeps.GridConfig):
        cells = [{"cell": c.index, "dir": os.path.join(out, "cells", c.dirname), "values": c.values,
                  "config_hash": c.config.hash, "chunks": chunks(c.config)} for c in config.cells]
        if as_json:
            _print_json({"out": out, "hash": config.hash, "factors": list(config.factors), "cells": cells})
            return 0
        print(f"grid {config.name} (hash {config.hash}): {len(cells)} cells over {', '.join(config.factors)} "
              f"into {out}:")
        for c, cell in zip(config.cells, cells):
            fits = sum(p["fits"] for p in cell["chunks"])
            print(f"  cell {c.index}: {c.label}; {len(cell['chunks'])} chunks, {fits} fits (hash {c.config.hash})")
        return 0
    plan = chunks(config)
    if as_json:
        _print_json({"out": out, "hash": config.hash, "config": config.to_dict(), "chunks": plan})
    else:
        print(json.dumps(config.to_dict(), indent=2))
        print(f"config hash {config.hash}; {len(plan)} chunks into {out}:")
        for c in plan:
            print(f"  chunk {c['chunk']}: n = {c['sizes']}, {c['fits']} fits")
    return 0


def cmd_sweep(args) -> int:
    config, source = _sweep_config(args)
    out = args.out or os.path.join("sweeps", config.name)
    if args.dry_run:
        return _dry_run(config, out, args.json)
    progress = (not args.json and sys.stderr.isatty()) if args.progress is None else args.progress
    kwargs = dict(resume=args.resume, overwrite=args.overwrite, progress=progress, source_text=source,
                  num_bootstrap=args.bootstrap, plots=not args.no_plots)
    distributed = args.workers is not None or args.scheduler is not None
    if distributed and args.shard is not None:
        raise CLIError("--shard is for array jobs without a scheduler: give it without --workers / --scheduler")
    if args.workers is not None and args.scheduler is not None:
        raise CLIError("give one of --workers N (a local cluster) or --scheduler ADDRESS (a running one)")
    try:
        if distributed:
            result = run_distributed(config, out, workers=args.workers, scheduler=args.scheduler, **kwargs)
        else:
            result = sweeps.run_sweep(config, out, shard=args.shard, **kwargs)
    except KeyboardInterrupt:
        print(f"\njaxmoe: interrupted; the completed chunks are saved in {out}: rerun with --resume to continue",
              file=sys.stderr)
        return INTERRUPTED
    except ImportError as err:  # an optional extra that is not installed
        raise CLIError(str(err)) from None
    except OSError as err:
        raise JaxMoEInputError("out", out, f"could not be written ({err})") from None
    summary = result.summary
    if args.json:
        _print_json({"out": out, "computed_chunks": result.computed, "reused_chunks": result.reused, **summary})
    else:
        grid = isinstance(config, sweeps.GridConfig)
        print((sweeps.format_grid_summary if grid else sweeps.format_summary)(summary))
        print(f"wrote {out}/: {', '.join(summary['files'])} ({len(result.computed)} chunks computed, "
              f"{len(result.reused)} reused, {result.seconds:.0f} s)")
    return 0


# ---------------------------------------------------------------- report
def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="results.csv, summary.json and plots from a sweep folder (complete or not)")
    p.add_argument("dir", metavar="DIR", help="a folder written by `jaxmoe sweep`")
    p.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    p.add_argument("--no-plots", action="store_true", help="skip rate_curves.png / .pdf")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    if not os.path.isdir(args.dir):
        raise JaxMoEInputError("DIR", args.dir, "no such folder")
    if not 0 < args.level < 1:
        raise JaxMoEInputError("--level", args.level, "must be in (0, 1)")
    grid = sweeps.is_grid_folder(args.dir)
    write = sweeps.write_grid_report if grid else sweeps.write_report
    try:
        summary = write(args.dir, num_bootstrap=args.bootstrap, level=args.level, plots=not args.no_plots)
    except OSError as err:
        raise JaxMoEInputError("DIR", args.dir, f"could not be written ({err})") from None
    if args.json:
        _print_json(summary)
    else:
        print((sweeps.format_grid_summary if grid else sweeps.format_summary)(summary))
        print(f"wrote {args.dir}/: {', '.join(summary['files'])}")
    return 0


# ---------------------------------------------------------------- table1
TABLE1_CONFIGS = os.path.join("experiments", "configs", "table1")


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: must be comma-separated row names, e.g. softmax-ridge,softmax-linear")
    return names


def add_table1_parser(sub) -> None:
    p = sub.add_parser(
        "table1", help="every row of Table 1 as ordinary sweeps (one TOML per row), resumable, one report with verdicts",
        description="Run every row config of --configs (one TOML per row: an ordinary sweep or grid, its cells the "
                    "row's variants) into --out/<row>, then write --out/table1.md, summary.json and table1.png/.pdf: "
                    "per row and variant the slopes of the median with CIs and a verdict against the theory "
                    "(rules in jaxmoe/sweeps/table1.py and the README). Resumable with --resume.")
    p.add_argument("--configs", default=TABLE1_CONFIGS, help=f"folder of row configs (default {TABLE1_CONFIGS})")
    p.add_argument("--rows", type=_names, help="only these rows (file names without .toml), e.g. softmax-ridge")
    p.add_argument("--out", default="table1", help="output folder (default: table1)")
    p.add_argument("--sizes", type=_sizes, help="override every row's sample sizes (a reduced table)")
    p.add_argument("--replicates", type=_positive_int, help="override every row's replicates per size")
    p.add_argument("--resume", action="store_true", help="continue the rows already in --out: keep their chunks")
    p.add_argument("--overwrite", action="store_true", help="discard the rows' previous files in --out and start again")
    p.add_argument("--report-only", action="store_true", dest="report_only",
                   help="fit nothing: report the rows already in --out (complete or not)")
    p.add_argument("--onsets", metavar="FILE", help="JSON {row: {onset, fisher_onset}} of predicted onsets n / sigma^2 "
                   "(e.g. experiments/results/lower_bound/conditioning.json), shown next to the measured ones")
    p.add_argument("--dry-run", action="store_true", help="validate every row config, print the rows and cells, fit nothing")
    p.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with ETA on stderr (default: on for a terminal)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=cmd_table1)


def _table1_dry_run(rows, out: str, as_json: bool) -> int:
    plan = []
    for name, config in rows:
        cells = config.cells if isinstance(config, sweeps.GridConfig) else [None]
        plan.append({"row": name, "dir": os.path.join(out, name), "variants": [
            sweeps.variant_label((c.config if c else config).spec) for c in cells],
            "fits": sum(p.fits for c in cells for p in sweeps.plan_chunks(c.config if c else config))})
    if as_json:
        _print_json({"out": out, "rows": plan})
        return 0
    for r in plan:
        print(f"{r['row']}: {len(r['variants'])} variants, {r['fits']} fits into {r['dir']}")
        for label in r["variants"]:
            print(f"  {label}")
    return 0


def _read_onsets(path: str | None):
    if path is None:
        return None
    try:
        with open(path) as fh:
            return sweeps.check_onsets(json.load(fh))
    except OSError as err:
        raise JaxMoEInputError("--onsets", path, f"could not be read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise JaxMoEInputError("--onsets", path, f"is not JSON ({err.msg}, line {err.lineno})") from None


def cmd_table1(args) -> int:
    onsets = _read_onsets(args.onsets)
    if args.report_only:
        rows = sweeps.row_folders(args.out)
        if args.rows:
            unknown = [r for r in args.rows if r not in rows]
            if unknown:
                raise JaxMoEInputError("--rows", ",".join(unknown), f"not in {args.out}; it holds {rows}")
            rows = [r for r in rows if r in args.rows]
        summary = sweeps.write_table1_report(args.out, rows, num_bootstrap=args.bootstrap, plots=not args.no_plots,
                                             onsets=onsets)
    else:
        rows = sweeps.load_rows(args.configs, args.rows, sizes=args.sizes, replicates=args.replicates)
        if args.dry_run:
            return _table1_dry_run(rows, args.out, args.json)
        progress = (not args.json and sys.stderr.isatty()) if args.progress is None else args.progress
        try:
            summary = sweeps.run_table1(rows, args.out, resume=args.resume, overwrite=args.overwrite, progress=progress,
                                        num_bootstrap=args.bootstrap, plots=not args.no_plots, onsets=onsets,
                                        log=lambda line: print(line, file=sys.stderr)).summary
        except KeyboardInterrupt:
            print(f"\njaxmoe: interrupted; the completed chunks are saved in {args.out}: rerun with --resume to "
                  "continue", file=sys.stderr)
            return INTERRUPTED
        except OSError as err:
            raise JaxMoEInputError("out", args.out, f"could not be written ({err})") from None
    if args.json:
        _print_json(summary)
    else:
        print(sweeps.table1_markdown(summary), end="")
        print(f"wrote {args.out}/: {', '.join(summary['files'])}")
    return 0


# ---------------------------------------------------------------- entry point
SUBCOMMANDS: list[Callable] = [add_sweep_parser, add_report_parser, add_table1_parser, add_identify_parser,
                               add_bound_parser, add_presets_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxmoe", description="Executable convergence-rate theory for softmax-gating mixture of experts.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _stdout_gone() -> int:
    """stdout's reader has closed the pipe: point stdout at /dev/null, so that nothing more (not even the
    interpreter's flush at exit) fails on it; exit code 0 (module docstring)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (e.g. captured in tests)
        pass
    return 0


def _leave_now(code: int) -> None:
    """End the process now with `code` if threads still run that would hold its exit: `fit_curve`'s background
    compiles, which cannot be stopped (a Ctrl-C while compiling would otherwise wait for them, tens of seconds).
    What an interrupted sweep keeps is on disk by then: chunk files and provenance written, the lock released."""
    me = threading.current_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not me):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, also when stdout's reader has gone; 2 bad input;
    130 an interrupted sweep). Without `argv` (the program itself: `jaxmoe`, `python -m jaxmoe`) each CPU core is
    made a device (`jaxmoe.use_all_cores`) and an interrupted sweep ends the process at once (`_leave_now`);
    called with `argv`, it leaves the process's devices alone and returns like any other command."""
    try:
        args = build_parser().parse_args(argv)
        if argv is None:  # the program itself: one CPU device per core, before JAX starts (jaxmoe/runtime.py)
            jaxmoe.use_all_cores()
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        if code == INTERRUPTED and argv is None:
            _leave_now(code)
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except (CLIError, JaxMoEInputError) as err:
        print(f"jaxmoe: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
