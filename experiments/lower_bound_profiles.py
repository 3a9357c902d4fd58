"""Inverse-bound profiles omega(eps), two-point curves LB(n) and verdicts for the six Table 1 presets (issue 14).

    .venv/bin/python experiments/lower_bound_profiles.py [--starts 8] [--iterations 200] [--out DIR]
    .venv/bin/python experiments/lower_bound_profiles.py --verdicts-from DIR/profiles.json   # fit nothing

Rows: each preset with the loss its theorem is stated in; the power-r losses of the linear rows at r = 1..4 (one
verdict over all r, the rule of issue 14 item 5); and `dts-linear-router/divided`: the same truth with the
scaling symmetry (beta1, beta0, tau) -> lambda (beta1, beta0, tau) divided out of eq. 16
(`MoEFamily.divide_out_symmetries`), so that it gets a verdict of its own. Its theory exponent is max(1, 2 / r): in
the quotient the model is a softmax-gating ridge model (strongly identifiable); D >= eps is reached most cheaply
by an over-fitted cell's split (omega ~ |dtheta|^2, D ~ |dtheta|^r: m = 2 / r) or by a cell's total weight
(omega ~ D ~ |dw|: m = 1), whichever has the larger exponent (an exactly-fitted atom gives 1 / r).

Writes DIR/profiles.json (default experiments/results/lower_bound): per row the loss, per r the profile (eps, omega,
found D, spread, kept starts, floor, resolvable, at_floor), its local exponent and two-point curve (sigma = 0.1,
n = 10^2..10^12), the verdict over all r and the symmetries that move the loss; and DIR/NAME.png per row.
"""

import argparse
import json
import os
import time

import numpy as np

from jaxmoe.bounds import InverseBoundProfile, bound_verdict, inverse_bound, plot_bound, two_point_curve
from jaxmoe.bounds.profile import default_eps
from jaxmoe.presets import PRESET_NAMES, get_preset

R_ALL = (1.0, 2.0, 3.0, 4.0)
# (preset, loss, r values, divide out, theory exponent per r): the loss each row's theorem is about (THEORY.md §3-5).
ROWS = {"softmax-ridge": ("softmax-ridge", "d1", (None,), False, {None: 1.0}),
        "softmax-linear": ("softmax-linear", "d2r", R_ALL, False, {r: 1.0 for r in R_ALL}),
        "dts-linear-router": ("dts-linear-router", "temperature", R_ALL, False, {r: 1.0 for r in R_ALL}),
        "dts-linear-router/divided": ("dts-linear-router", "temperature", R_ALL, True,
                                      {r: max(1.0, 2.0 / r) for r in R_ALL}),
        "dts-nonlinear-router": ("dts-nonlinear-router", "d4", (None,), False, {None: 1.0}),
        "hierarchical-ridge": ("hierarchical-ridge", "hierarchical", (None,), False, {None: 1.0}),
        "hierarchical-linear": ("hierarchical-linear", "hierarchical", R_ALL, False, {r: 1.0 for r in R_ALL})}
FIELDS = ("eps", "omega", "loss_found", "spread", "kept_starts", "floor", "resolvable")


def profile_record(prof: InverseBoundProfile, sigma: float, seconds: float) -> dict:
    rec = {"r": prof.r, "seconds": round(seconds, 1), "exponent": prof.exponent,
           "profile": {f: np.asarray(getattr(prof, f)).tolist() for f in FIELDS}, "at_floor": prof.at_floor.tolist()}
    if prof.resolvable.any():
        c = two_point_curve(prof, sigma)
        rec["two_point"] = {"n": c.n.tolist(), "lower_bound": c.lower_bound.tolist(), "eps_n": c.eps_n.tolist(),
                            "local_slope": c.local_slope.tolist()}
    return rec


def run_row(name: str, args) -> tuple[dict, dict]:
    preset, loss, rs, divide, theory = ROWS[name]
    setting = get_preset(preset)
    profiles, by_r = {}, {}
    for r in rs:
        t = time.time()
        prof = inverse_bound(setting, loss=loss, r=r, eps=default_eps(), starts=args.starts,
                             iterations=args.iterations, divide_out=divide)
        profiles[r], by_r[str(r)] = prof, profile_record(prof, setting.sigma, time.time() - t)
        ok = prof.resolvable
        print(f"{name:26s} {loss:12s} r={r} {by_r[str(r)]['seconds']:6.1f}s exponent={prof.exponent} "
              f"resolvable={int(ok.sum())}/{ok.size} at_floor={int(prof.at_floor.sum())} "
              f"not_identifiable={prof.not_identifiable}", flush=True)
    v = bound_verdict(profiles, m_theory=theory, sigma=setting.sigma)
    first = profiles[rs[0]]
    rec = {"preset": preset, "loss": loss, "divided_out": list(first.divided_out), "m_theory": list(theory.values()),
           "verdict": v.verdict, "why": v.why, "rate": v.rate, "exponents": {str(r): m for r, m in v.exponents.items()},
           "not_identifiable": first.not_identifiable, "symmetry_loss": first.symmetry_loss,
           **by_r[str(rs[0])], "by_r": by_r}
    print(f"{name:26s} verdict {v.verdict} ({v.why}) rate={v.rate}", flush=True)
    return rec, profiles


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {list(ROWS)}")
    ap.add_argument("--out", default="experiments/results/lower_bound")
    ap.add_argument("--verdicts-from", help="print the verdicts of a profiles.json written earlier; fit nothing")
    args = ap.parse_args()
    if args.verdicts_from:
        return print_verdicts(args.verdicts_from)
    os.makedirs(args.out, exist_ok=True)
    out = {}
    for name in args.rows.split(","):
        out[name], profiles = run_row(name, args)
        setting = get_preset(ROWS[name][0])
        curves = {r: two_point_curve(p, setting.sigma) for r, p in profiles.items() if p.resolvable.any()}
        theory = next(iter(ROWS[name][4].values()))
        plot_bound(profiles, curves, os.path.join(args.out, name.replace("/", "-")), theory,
                   f"{name}: {ROWS[name][1]} ({out[name]['verdict']})")
    with open(os.path.join(args.out, "profiles.json.tmp"), "w") as fh:
        json.dump(out, fh, indent=1)
    os.replace(os.path.join(args.out, "profiles.json.tmp"), os.path.join(args.out, "profiles.json"))


def _stored(rec: dict) -> InverseBoundProfile:
    pr = {k: np.asarray(v, dtype=float) for k, v in rec["profile"].items()}
    n = pr["eps"].size
    return InverseBoundProfile(rec.get("loss", ""), rec["r"], pr["eps"], pr["omega"], pr["omega"], pr["loss_found"],
                               pr["spread"], pr["kept_starts"], pr["floor"], pr["resolvable"].astype(bool),
                               np.zeros(n), np.zeros((n, 1), int), rec["exponent"], rec.get("symmetry_loss", {}))


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
    for name, profiles in stored_profiles(path).items():
        v = bound_verdict(profiles, m_theory=ROWS[name][4] if name in ROWS else 1.0)
        print(f"{name:26s} {v.verdict:24s} rate={v.rate} exponents={v.exponents} ({v.why})")


if __name__ == "__main__":
    main()
