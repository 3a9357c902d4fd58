"""Inverse-bound profiles omega(eps), two-point curves LB(n) and verdicts for the six Table 1 presets (issue 14).

    .venv/bin/python experiments/lower_bound_profiles.py [--starts 8] [--iterations 200] [--out DIR]
        [--optimiser lbfgs|gauss_newton|both] [--difference direct|path]
        [--continuation rescale|secant] [--per-decade 8[,16]] [--rays] [--rows NAME,NAME]
    .venv/bin/python experiments/lower_bound_profiles.py --set own     # the pre-registered truths (own_truths.py)
    .venv/bin/python experiments/lower_bound_profiles.py --verdicts-from DIR/profiles.json   # fit nothing

Rows: each preset with the loss its theorem is stated in; the power-r losses of the linear rows at r = 1..4 (one
verdict over all r, the rule of issue 14 item 5); and `dts-linear-router/divided`: the same truth with the
scaling symmetry (beta1, beta0, tau) -> lambda (beta1, beta0, tau) divided out of eq. 16
(`MoEFamily.divide_out_symmetries`), so that it gets a verdict of its own. Its theory exponent is max(1, 2 / r): in
the quotient the model is a softmax-gating ridge model (strongly identifiable); D >= eps is reached most cheaply
by an over-fitted cell's split (omega ~ |dtheta|^2, D ~ |dtheta|^r: m = 2 / r) or by a cell's total weight
(omega ~ D ~ |dw|: m = 1), whichever has the larger exponent (an exactly-fitted atom gives 1 / r).

A row with several r or grids pools the measures of all its runs at once (`pool_profiles`: each r's envelope
over every G any run found; the exponent of each run alone is kept as `exponent_own`, {per decade: m}; with
several grids, the verdict is also taken without each run, `without_run`, and stands only if none changes it;
each leave-out's profile is stored with the r's, so `--verdicts-from` applies the same rule). Writes
DIR/profiles.json (`--set own`: DIR/own_truths.json;
default DIR experiments/results/lower_bound): per row the loss, per r the profile (eps, omega, found D, spread, kept
starts, floor, resolvable, at_floor), its local exponent and two-point curve (sigma = 0.1, n = 10^2..10^12), the
verdict over all r and the symmetries that move the loss; and DIR/NAME.png per row. Each row is written as soon
as it is done, into the file's other rows (a rerun of one row replaces that row only).
"""

import argparse
import json
import os
import time

import numpy as np

from jaxmoe.bounds import (CONTINUATIONS, DIFFERENCES, OPTIMISERS, InverseBoundProfile, bound_verdict,
                           inverse_bound, plot_bound, pool_profiles, taylor_check, two_point_curve)
from jaxmoe.bounds.profile import default_eps
from jaxmoe.presets import get_preset
from shared import positive_int, positive_ints

R_ALL = (1.0, 2.0, 3.0, 4.0)
# (setting, loss, r values, divide out, theory exponent per r): the loss each row's theorem is about (THEORY.md §3-5).
ROWS = {"softmax-ridge": (lambda: get_preset("softmax-ridge"), "d1", (None,), False, {None: 1.0}),
        "softmax-linear": (lambda: get_preset("softmax-linear"), "d2r", R_ALL, False, {r: 1.0 for r in R_ALL}),
        "dts-linear-router": (lambda: get_preset("dts-linear-router"), "temperature", R_ALL, False,
                              {r: 1.0 for r in R_ALL}),
        "dts-linear-router/divided": (lambda: get_preset("dts-linear-router"), "temperature", R_ALL, True,
                                      {r: max(1.0, 2.0 / r) for r in R_ALL}),
        "dts-nonlinear-router": (lambda: get_preset("dts-nonlinear-router"), "d4", (None,), False, {None: 1.0}),
        "hierarchical-ridge": (lambda: get_preset("hierarchical-ridge"), "hierarchical", (None,), False, {None: 1.0}),
        "hierarchical-linear": (lambda: get_preset("hierarchical-linear"), "hierarchical", R_ALL, False,
                                {r: 1.0 for r in R_ALL})}


def own_rows() -> dict:
    """The pre-registered truths of own_truths.py in ROWS' format (their predicted verdict is dropped here)."""
    from own_truths import TRUTHS
    return {name: (make, loss, rs, divide, theory) for name, (make, loss, rs, divide, _, theory) in TRUTHS.items()}
FIELDS = ("eps", "omega", "loss_found", "spread", "kept_starts", "floor", "resolvable")


def taylor_record(setting, prof: InverseBoundProfile) -> dict:
    """The floor-free cross-check (`taylor_check`): agreement where both resolve omega, and what it sees below the
    float64 floor."""
    c = taylor_check(setting, prof)
    both = ~np.isnan(c.relative_difference)
    return {"order": c.order, "converged": int(c.converged.sum()), "both_resolvable": int(both.sum()),
            "max_relative_difference": float(np.max(c.relative_difference[both])) if both.any() else None,
            "below_float64_floor": int(c.below_float64_floor.sum()), "omega_taylor": c.omega_taylor.tolist(),
            "taylor_floor": c.taylor_floor.tolist(), "tail": c.tail.tolist()}


def profile_record(prof: InverseBoundProfile, sigma: float, seconds: float, setting=None) -> dict:
    rec = {"r": prof.r, "seconds": round(seconds, 1), "exponent": prof.exponent,
           "profile": {f: np.asarray(getattr(prof, f)).tolist() for f in FIELDS}, "at_floor": prof.at_floor.tolist()}
    if setting is not None:
        rec["taylor"] = taylor_record(setting, prof)
    if prof.resolvable.any():
        c = two_point_curve(prof, sigma)
        rec["two_point"] = {"n": c.n.tolist(), "lower_bound": c.lower_bound.tolist(), "eps_n": c.eps_n.tolist(),
                            "local_slope": c.local_slope.tolist()}
    return rec


def run_row_runs(name: str, setting, loss: str, rs, divide: bool, args) -> tuple[dict, dict]:
    """One profile per (r, entry of `--per-decade`): {(r, per_decade): profile} and {r: seconds}."""
    runs, seconds = {}, {r: 0.0 for r in rs}
    for r in rs:
        for per_decade in args.per_decade:
            t = time.time()
            prof = inverse_bound(setting, eps=default_eps(1.0, args.eps_min, per_decade), loss=loss, r=r,
                                 starts=args.starts, iterations=args.iterations, divide_out=divide,
                                 optimiser=args.optimiser, difference=args.difference,
                                 continuation=args.continuation)
            runs[(r, per_decade)], seconds[r] = prof, seconds[r] + time.time() - t
            ok = prof.resolvable
            print(f"{name:32s} {loss:12s} r={r} per decade {per_decade} {time.time() - t:6.1f}s "
                  f"exponent={prof.exponent} resolvable={int(ok.sum())}/{ok.size} at_floor={int(prof.at_floor.sum())} "
                  f"not_identifiable={prof.not_identifiable}", flush=True)
    return runs, seconds


def pool_row(setting, runs: dict, rs, args) -> tuple[dict, dict]:
    """Every run of the row pooled once (`pool_profiles`: each r's envelope over every G any run found, and the
    pool without each run of an r), each r's profile on its finest grid; with `--rays` the same with rays, and
    {r: exponent without rays}. One run without rays: that run."""
    finest = max(args.per_decade)
    if len(runs) == 1 and not args.rays:
        return {rs[0]: runs[(rs[0], finest)]}, {rs[0]: None}
    plain = pool_profiles(setting, runs)
    if not args.rays:
        return {r: plain[(r, finest)] for r in rs}, {r: None for r in rs}
    with_rays = pool_profiles(setting, runs, rays=True)
    return {r: with_rays[(r, finest)] for r in rs}, {r: plain[(r, finest)].exponent for r in rs}


def run_row(name: str, spec, args) -> tuple[dict, dict]:
    make, loss, rs, divide, theory = spec
    setting = make()
    runs, seconds = run_row_runs(name, setting, loss, rs, divide, args)
    profiles, no_rays = pool_row(setting, runs, rs, args)
    own = {r: {str(pd): runs[(r, pd)].exponent for pd in args.per_decade} for r in rs}
    if len(runs) > 1:
        print(f"{name:32s} pooled exponents {[p.exponent for p in profiles.values()]}", flush=True)
    by_r = {str(r): {**profile_record(p, setting.sigma, seconds[r], setting), "exponent_own": own[r],
                     "from_run": p.from_run_names,
                     "exponent_without_rays": no_rays[r],
                     "without_run_profiles": {str(run): {"exponent": left.exponent,
                                                         "profile": {f: np.asarray(getattr(left, f)).tolist()
                                                                     for f in FIELDS}}
                                              for run, left in p.without_run.items()},
                     "from_ray": None if p.from_ray is None else np.asarray(p.from_ray).tolist()}
            for r, p in profiles.items()}
    v = bound_verdict(profiles, m_theory=theory, sigma=setting.sigma)
    first = profiles[rs[0]]
    rec = {"setting": setting.name, "d": setting.d, "loss": loss, "optimiser": args.optimiser,
           "difference": args.difference, "continuation": args.continuation, "per_decade": args.per_decade,
           "rays": args.rays,
           "divided_out": list(first.divided_out), "m_theory": list(theory.values()),
           "verdict": v.verdict, "why": v.why, "rate": v.rate, "exponents": {str(r): m for r, m in v.exponents.items()},
           "without_run": [{"r": r, "run": str(run), "verdict": w, "exponents": {str(q): m for q, m in e.items()}}
                           for (r, run), (w, e) in v.without_run.items()],
           "not_identifiable": first.not_identifiable, "symmetry_loss": first.symmetry_loss,
           **by_r[str(rs[0])], "by_r": by_r}
    print(f"{name:32s} verdict {v.verdict} ({v.why}) rate={v.rate}; taylor "
          f"{[(t['taylor']['max_relative_difference'], t['taylor']['below_float64_floor']) for t in by_r.values()]}",
          flush=True)
    return rec, profiles


def save_row(path: str, name: str, rec: dict) -> None:
    """Row `name` into the JSON file at `path` (atomic), keeping its other rows: a run of some rows, or one that
    fails part-way, loses nothing already written."""
    stored = {}
    if os.path.exists(path):
        with open(path) as fh:
            stored = json.load(fh)
    stored[name] = rec
    with open(path + ".tmp", "w") as fh:
        json.dump(stored, fh, indent=1)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=positive_int, default=8)
    ap.add_argument("--iterations", type=positive_int, default=200)
    ap.add_argument("--optimiser", choices=sorted(OPTIMISERS), default="lbfgs")
    ap.add_argument("--difference", choices=DIFFERENCES, default="direct")
    ap.add_argument("--continuation", choices=CONTINUATIONS, default="rescale")
    ap.add_argument("--set", choices=("presets", "own"), default="presets")
    ap.add_argument("--rows", help="comma-separated row names (default: every row of the set)")
    ap.add_argument("--eps-min", type=float, help="smallest eps (default 1e-6; own truths 1e-4)")
    ap.add_argument("--per-decade", type=positive_ints, default=[8],
                    help="eps per decade (8); more makes each continuation step smaller; a comma list (8,16) runs "
                         "each grid and pools their measures on the finest")
    ap.add_argument("--rays", action="store_true",
                    help="pool every run's measures with their rays (pool_profiles(rays=True)); the exponent "
                         "without rays is kept as exponent_without_rays")
    ap.add_argument("--out", default="experiments/results/lower_bound")
    ap.add_argument("--verdicts-from", help="print the verdicts of a profiles.json written earlier; fit nothing")
    args = ap.parse_args()
    if args.verdicts_from:
        return print_verdicts(args.verdicts_from)
    rows = ROWS if args.set == "presets" else own_rows()
    names = args.rows.split(",") if args.rows else list(rows)
    if not set(names) <= set(rows):
        ap.error(f"--rows={args.rows}: each must be one of {sorted(rows)}")
    args.eps_min = args.eps_min or (1e-6 if args.set == "presets" else 1e-4)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "profiles.json" if args.set == "presets" else "own_truths.json")
    out = {}
    for name in names:
        out[name], profiles = run_row(name, rows[name], args)
        save_row(path, name, out[name])
        sigma = rows[name][0]().sigma
        curves = {r: two_point_curve(p, sigma) for r, p in profiles.items() if p.resolvable.any()}
        theory = next(iter(rows[name][4].values()))
        plot_bound(profiles, curves, os.path.join(args.out, name.replace("/", "-")), theory,
                   f"{name}: {rows[name][1]} ({out[name]['verdict']})")


def _stored(rec: dict) -> InverseBoundProfile:
    pr = {k: np.asarray(v, dtype=float) for k, v in rec["profile"].items()}
    n = pr["eps"].size
    prof = InverseBoundProfile(rec.get("loss", ""), rec["r"], pr["eps"], pr["omega"], pr["omega"], pr["loss_found"],
                               pr["spread"], pr["kept_starts"], pr["floor"], pr["resolvable"].astype(bool),
                               np.zeros(n), np.zeros((n, 1), int), rec["exponent"], rec.get("symmetry_loss", {}))
    left = {run: _stored({**rec, **out, "without_run_profiles": {}})
            for run, out in (rec.get("without_run_profiles") or {}).items()}
    return prof._replace(without_run=left)


def stored_profiles(path) -> dict:
    """{row: {r: InverseBoundProfile}} from a profiles.json (the fields the verdict and the onset read)."""
    with open(path) as fh:
        data = json.load(fh)
    out = {}
    for name, rec in data.items():
        by_r = rec.get("by_r", {str(rec["r"]): rec})
        out[name] = {None if r == "None" else float(r): _stored({**p, "loss": rec["loss"],
                                                                 "symmetry_loss": rec["symmetry_loss"]})
                     for r, p in by_r.items()}
    return out


def print_verdicts(path):
    """`bound_verdict` of each row's profiles (all r) as stored in `path`."""
    rows = {**ROWS, **own_rows()}
    for name, profiles in stored_profiles(path).items():
        v = bound_verdict(profiles, m_theory=rows[name][4] if name in rows else 1.0)
        print(f"{name:26s} {v.verdict:24s} rate={v.rate} exponents={v.exponents} ({v.why})")


if __name__ == "__main__":
    main()
