"""float32 vs float64 fitting: do they give the same fits, losses and slopes?

    .venv/bin/python experiments/precision.py [--preset softmax-ridge] [--k exact|over]

The same study (same seed) in both precisions with the default solver; reports solver statuses, the mean
losses per n and the D1 and L2 slopes with their CIs. Note: a key draws different samples in float32 and
float64 (32 vs 64 random bits per number), so the two runs are two independent studies of the same
truth: compare their statistics, not fit for fit. Writes experiments/results/precision.json.
"""

import argparse
import json
import os

import numpy as np

import jaxmoe
from shared import committed_starts  # noqa: E402  (beside this script)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="softmax-ridge")
    parser.add_argument("--k", default="exact")
    parser.add_argument("--sizes", default="300,1000,3000,10000,30000")
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "precision.json"))
    args = parser.parse_args()
    setting = jaxmoe.get_preset(args.preset)
    k = setting.k_star + (args.k == "over")
    sizes = [int(s) for s in args.sizes.split(",")]
    out = {}
    for precision in ("float64", "float32"):
        fit = jaxmoe.fit_curve(setting, sizes, args.replicates, seed=0, k=k, precision=precision,
                               **committed_starts(k > setting.k_star))
        metrics = jaxmoe.curve_metrics(setting, fit)
        out[precision] = dict(
            summary=fit.summary(), objective=fit.objective.tolist(),
            mean_loss_by_n={m: np.mean(v, axis=1).tolist() for m, v in metrics.items()},
            slopes={m: jaxmoe.loglog_slope(fit.sizes, v.T)._asdict() for m, v in metrics.items()})
        print(precision, json.dumps(out[precision]["summary"]), flush=True)
        for m in metrics:
            s = out[precision]["slopes"][m]
            print(f"  {m}: slope {s['slope']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]", flush=True)
    for m in out["float64"]["mean_loss_by_n"]:
        ratio = np.array(out["float32"]["mean_loss_by_n"][m]) / np.array(out["float64"]["mean_loss_by_n"][m])
        print(f"mean {m} float32 / float64 by n:", np.round(ratio, 3).tolist())
    with open(args.out + ".tmp", "w") as fh:
        json.dump(dict(preset=args.preset, k=k, sizes=sizes, replicates=args.replicates, **out), fh, indent=1,
                  default=lambda o: o.tolist() if hasattr(o, "tolist") else float(o))
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
