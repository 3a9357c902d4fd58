"""Does the box Theta decide the over-fitted D1 rate on a finite range? (a lead for issue 4)

    .venv/bin/python experiments/box_size_probe.py [--boxes 10,4] [--gate-boxes 10] [--sigmas 0.1]
        [--sizes 300,...] [--replicates 16]

softmax-ridge, k = k* + 1, the same seed, for every (expert box, gate box, sigma) combination: the
expert box |a|, |b| <= B, the gate box |beta0|, |beta1| <= B_gate, and noise sigma.
Prints the slopes of mean and median D1 and of the L2 error with bootstrap CIs, and the mean D1 per n.
"""

import argparse
import dataclasses
import json

import numpy as np

import jaxmoe
from shared import committed_starts, slope_row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--boxes", default="10,4")
    parser.add_argument("--gate-boxes", default="10")
    parser.add_argument("--sigmas", default="0.1")
    parser.add_argument("--sizes", default="300,1000,3000,10000,30000,100000")
    parser.add_argument("--replicates", type=int, default=16)
    args = parser.parse_args()
    base = jaxmoe.get_preset("softmax-ridge")
    sizes = [int(s) for s in args.sizes.split(",")]
    combos = [(b, g, s) for b in args.boxes.split(",") for g in args.gate_boxes.split(",")
              for s in args.sigmas.split(",")]
    for bound, gate, sigma in [(float(b), float(g), float(s)) for b, g, s in combos]:
        model = dataclasses.replace(base.model, box=jaxmoe.ParameterBox(gate=gate, expert=bound))
        setting = base.replace(model=model, sigma=sigma)
        fit = jaxmoe.fit_curve(setting, sizes, args.replicates, seed=0,
                               **committed_starts(setting.k_fit > setting.k_star))
        metrics = jaxmoe.curve_metrics(setting, fit)
        row = {"expert_box": bound, "gate_box": gate, "sigma": sigma, "converged": fit.converged_fraction,
               "below_truth": fit.summary()["below_truth_fraction"],
               "mean_d1_by_n": np.round(metrics["voronoi_d1"].mean(axis=1), 3).tolist()}
        row.update(slope_row(fit.sizes, metrics))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
