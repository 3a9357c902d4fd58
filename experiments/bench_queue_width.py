"""How many lanes should the LM work queue have? Same 32 fits, one start each, at several widths.

    .venv/bin/python experiments/bench_queue_width.py [--sizes 300,1000,10000] [--lanes 2,4,8,16]

Prints ms per fit (run time, compile excluded, best of 2) for each width and for one fit at a time.
"""

import argparse
import json

import jaxmoe


def per_fit_ms(setting, n, replicates, **kwargs):
    best = None
    for _ in range(2):
        fit = jaxmoe.fit_curve(setting, [n], replicates, seed=0, restarts=1, init_noise=0.1, **kwargs)
        t = (fit.info["seconds"] - fit.info["compile_seconds"]) / replicates * 1000
        best = t if best is None else min(best, t)
    return round(best, 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="300,1000,10000")
    parser.add_argument("--lanes", default="2,4,8,16")
    parser.add_argument("--replicates", type=int, default=32)
    args = parser.parse_args()
    setting = jaxmoe.get_preset("softmax-ridge")
    jaxmoe.fit_curve(setting, [50], 2, seed=1, restarts=1)  # warm-up
    for n in [int(s) for s in args.sizes.split(",")]:
        row = {"n": n, "one_at_a_time": per_fit_ms(setting, n, args.replicates, chunk_size=1)}
        for lanes in [int(s) for s in args.lanes.split(",")]:
            row[f"lanes_{lanes}"] = per_fit_ms(setting, n, args.replicates, lanes=lanes)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
