"""Inverse-bound profiles omega(eps) and two-point curves LB(n) for the six Table 1 presets (issue 14, first cut).

    .venv/bin/python experiments/lower_bound_profiles.py [--starts 8] [--iterations 200] [--out DIR]

Writes DIR/profiles.json (default experiments/results/lower_bound): per preset the loss, the profile (eps,
omega, found D, spread, kept starts, floor, resolvable, at_floor), the local exponent over the smallest
resolvable decade, the symmetries that move the loss, and the two-point curve for sigma = 0.1, n = 10^2..10^12.
"""

import argparse
import json
import os
import time

import numpy as np

from jaxmoe.bounds import InverseBoundProfile, bound_verdict, inverse_bound, two_point_curve
from jaxmoe.bounds.profile import default_eps
from jaxmoe.presets import PRESET_NAMES, get_preset

# (loss, r): the loss each row's theorem is about (THEORY.md §3-5); the linear rows at r = 1.
LOSSES = {"softmax-ridge": ("d1", None), "softmax-linear": ("d2r", 1.0), "dts-linear-router": ("temperature", 1.0),
          "dts-nonlinear-router": ("d4", None), "hierarchical-ridge": ("hierarchical", None),
          "hierarchical-linear": ("hierarchical", 1.0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--out", default="experiments/results/lower_bound")
    ap.add_argument("--verdicts-from", help="print the verdicts of a profiles.json written earlier; fit nothing")
    args = ap.parse_args()
    if args.verdicts_from:
        return print_verdicts(args.verdicts_from)
    os.makedirs(args.out, exist_ok=True)
    out = {}
    for name in PRESET_NAMES:
        setting = get_preset(name)
        loss, r = LOSSES[name]
        t = time.time()
        prof = inverse_bound(setting, loss=loss, r=r, eps=default_eps(), starts=args.starts, iterations=args.iterations)
        seconds = time.time() - t
        v = bound_verdict(prof)
        rec = {"loss": loss, "r": r, "seconds": round(seconds, 1), "exponent": prof.exponent,
               "verdict": v.verdict, "why": v.why, "rate": v.rate,
               "not_identifiable": prof.not_identifiable, "symmetry_loss": prof.symmetry_loss,
               "profile": {f: np.asarray(getattr(prof, f)).tolist() for f in
                           ("eps", "omega", "loss_found", "spread", "kept_starts", "floor", "resolvable")},
               "at_floor": prof.at_floor.tolist()}
        if prof.resolvable.any():
            c = two_point_curve(prof, setting.sigma)
            rec["two_point"] = {"n": c.n.tolist(), "lower_bound": c.lower_bound.tolist(), "eps_n": c.eps_n.tolist(),
                                "local_slope": c.local_slope.tolist()}
        out[name] = rec
        ok = prof.resolvable
        print(f"{name:22s} {loss:12s} r={r} {seconds:6.1f}s exponent={prof.exponent} resolvable={int(ok.sum())}/"
              f"{ok.size} at_floor={int(prof.at_floor.sum())} omega/eps at 1e-3: "
              f"{prof.omega[np.argmin(abs(prof.eps - 1e-3))] / 1e-3:.2e} not_identifiable={prof.not_identifiable}"
              + (f" eps_n(1e12)={rec['two_point']['eps_n'][-1]:.3g} slope={rec['two_point']['local_slope'][-1]:.3f}"
                 if "two_point" in rec else ""), flush=True)
    with open(os.path.join(args.out, "profiles.json.tmp"), "w") as fh:
        json.dump(out, fh, indent=1)
    os.replace(os.path.join(args.out, "profiles.json.tmp"), os.path.join(args.out, "profiles.json"))


def stored_profiles(path) -> dict:
    """{preset: InverseBoundProfile} from a profiles.json (the fields the verdict and the onset read)."""
    with open(path) as fh:
        data = json.load(fh)
    out = {}
    for name, rec in data.items():
        pr = {k: np.asarray(v, dtype=float) for k, v in rec["profile"].items()}
        n = pr["eps"].size
        out[name] = InverseBoundProfile(rec["loss"], rec["r"], pr["eps"], pr["omega"], pr["omega"], pr["loss_found"],
                                        pr["spread"], pr["kept_starts"], pr["floor"], pr["resolvable"].astype(bool),
                                        np.zeros(n), np.zeros((n, 1), int), rec["exponent"], rec["symmetry_loss"])
    return out


def print_verdicts(path):
    """`bound_verdict` of each preset's profile as stored in `path`."""
    for name, prof in stored_profiles(path).items():
        v = bound_verdict(prof)
        print(f"{name:22s} {v.verdict:24s} rate={v.rate} exponents={v.exponents} ({v.why})")


if __name__ == "__main__":
    main()
