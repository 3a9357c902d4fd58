"""Does an inverse-bound profile reach the infimum? omega(eps) at a few eps against the optimiser's budget.

    .venv/bin/python experiments/bound_iterations.py --row hierarchical-ridge [--eps 1e-3,1e-4,1e-5,1e-6]
        [--starts 64] [--iterations 200,1000,3000] [--optimiser lbfgs|gauss_newton|both]
        [--out experiments/results/lower_bound/bound_iterations.json]

omega is the lowest ||f_G - f*|| the optimiser finds over G with D(G, G*) >= eps: an upper bound on the
infimum. If it keeps falling as the iteration budget grows, the profile (and the constant c of omega ~ c eps^m
that the conditioning diagnostic turns into a predicted onset) is set by the optimiser, not by the model.
Since a smaller omega means a weaker inverse bound, an optimiser-limited c makes the predicted onset n / sigma^2
a lower bound of the true one. Per budget: omega and omega / eps at every eps, the local exponents between
consecutive eps, the float64 floor and the seconds. The row's loss and r (the first of the row's r values) come
from `lower_bound_profiles.ROWS`. The JSON file holds one record per (row, starts, optimiser); a rerun replaces
its own (the L-BFGS records keep their old key, "ROW/starts=S").
"""

import argparse
import json
import os
import time

import numpy as np

from jaxmoe.bounds import OPTIMISERS, inverse_bound
from lower_bound_profiles import ROWS
from shared import positive_floats, positive_int, positive_ints


def budget_record(setting, loss: str, r, eps: np.ndarray, starts: int, iterations: int,
                  optimiser: str = "lbfgs") -> dict:
    t = time.time()
    prof = inverse_bound(setting, loss=loss, r=r, eps=eps, starts=starts, iterations=iterations, optimiser=optimiser)
    omega = np.asarray(prof.omega)
    e = np.asarray(prof.eps)
    return {"iterations": iterations, "seconds": round(time.time() - t, 1), "eps": e.tolist(),
            "omega": omega.tolist(), "omega_over_eps": (omega / e).tolist(),
            "local_exponents": (np.diff(np.log(omega)) / np.diff(np.log(e))).tolist(),
            "floor": np.asarray(prof.floor).tolist(), "resolvable": np.asarray(prof.resolvable).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", required=True, choices=sorted(ROWS))
    ap.add_argument("--eps", type=positive_floats, default=[1e-3, 1e-4, 1e-5, 1e-6])
    ap.add_argument("--starts", type=positive_int, default=64)
    ap.add_argument("--iterations", type=positive_ints, default=[200, 1000, 3000])
    ap.add_argument("--optimiser", choices=sorted(OPTIMISERS), default="lbfgs")
    ap.add_argument("--out", default="experiments/results/lower_bound/bound_iterations.json")
    args = ap.parse_args()
    eps = np.array(args.eps)
    make, loss, rs, _, _ = ROWS[args.row]
    records = []
    for iterations in args.iterations:
        records.append(budget_record(make(), loss, rs[0], eps, args.starts, iterations, args.optimiser))
        print(json.dumps(records[-1]), flush=True)
    stored = json.load(open(args.out)) if os.path.exists(args.out) else {}
    name = f"{args.row}/starts={args.starts}" + ("" if args.optimiser == "lbfgs" else f"/{args.optimiser}")
    stored[name] = {"row": args.row, "loss": loss, "r": rs[0], "starts": args.starts, "optimiser": args.optimiser,
                    "budgets": records}
    with open(args.out + ".tmp", "w") as fh:
        json.dump(stored, fh, indent=1)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
