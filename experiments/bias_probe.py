"""Is the expert bias what hides the over-fitted D1 rate of softmax-ridge? (a lead for issue 4)

    .venv/bin/python experiments/bias_probe.py [--sizes 300,...] [--replicates 16] [--sigma 0.1]

The ridge expert sigmoid(a x + b) satisfies PDE (9) exactly (d2F/dbeta1 db = dF/da = x e^{beta1 x}
sigmoid'), the same gate-expert interaction that slows linear experts (identifiability lab finding).
This fits, at k = k* + 1 and k = k*, the softmax-ridge preset's gate with bias-free experts
sigmoid(a x), a* = (3, -2.5), for which the two functions are not both in the family, and prints the D1 and
L2 slopes beside the preset's.
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

import jaxmoe
from shared import committed_starts, slope_row

SIGMOID_NO_BIAS = jaxmoe.Expert("sigmoid-no-bias", lambda x, eta: jax.nn.sigmoid(jnp.dot(eta["a"], x)),
                                lambda d: {"a": (d,)})


def no_bias_setting(sigma: float) -> jaxmoe.Setting:
    base = jaxmoe.get_preset("softmax-ridge")
    model = jaxmoe.SoftmaxMoE(SIGMOID_NO_BIAS, k=2, d=1)
    truth = base.truth._replace(eta={"a": np.array([[3.0], [-2.5]])})
    return jaxmoe.Setting("softmax-ridge-no-bias", model, truth, sigma=sigma, row=base.row,
                          theory=base.theory, why="bias-free ridge experts: PDE (9) has no b to act on")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="300,1000,3000,10000,30000,100000")
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--ks", default="over,exact")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    setting = no_bias_setting(args.sigma)
    for which in args.ks.split(","):
        s = setting.replace(k_fit=3 if which == "over" else 2)
        fit = jaxmoe.fit_curve(s, sizes, args.replicates, seed=0, **committed_starts(s.k_fit > s.k_star))
        metrics = jaxmoe.curve_metrics(s, fit)
        row = {"k": s.k_fit, "sigma": args.sigma, "converged": fit.converged_fraction,
               "below_truth": fit.summary()["below_truth_fraction"],
               "mean_d1_by_n": np.round(metrics["voronoi_d1"].mean(axis=1), 4).tolist()}
        row.update(slope_row(fit.sizes, metrics))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
