"""`make demo`: the default preset's rate curve, end to end: a thin wrapper over `jaxmoe sweep`.

    python -m jaxmoe.demo [--out demo_output] [--preset softmax-ridge] [--sizes 300,...] [--replicates 16] [--seed 0]

is `jaxmoe sweep --preset softmax-ridge --out demo_output --sizes ... --replicates 16 --seed 0 --overwrite`:
every (n, replicate) pair fitted (over-fitted, k = k* + 1, near-truth starts, projected Levenberg-Marquardt),
then `results.csv`, `summary.json`, `rate_curves.png` / `.pdf` written into --out. `--overwrite` because
a demo starts afresh each time (it discards only the files a previous sweep wrote there).
"""

from __future__ import annotations

import argparse
import sys

from jaxmoe import cli
from jaxmoe.runtime import use_all_cores
from jaxmoe.sweeps.config import DEFAULT_REPLICATES, DEFAULT_SIZES

DEFAULT_OUT = "demo_output"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoe.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for results.csv, summary.json, rate_curves.png/.pdf")
    parser.add_argument("--preset", default="softmax-ridge", help="a preset name (see `jaxmoe presets`)")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated sample sizes")
    parser.add_argument("--replicates", default=str(DEFAULT_REPLICATES), help="replicates per size")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: on for a terminal)")
    args = parser.parse_args(argv)
    sweep = ["sweep", "--preset", args.preset, "--out", args.out, "--sizes", args.sizes,
             "--replicates", args.replicates, "--seed", args.seed, "--overwrite"]
    if args.progress is not None:
        sweep.append("--progress" if args.progress else "--no-progress")
    if argv is None:  # the program itself, as `jaxmoe sweep` would (cli.main with argv leaves devices alone)
        use_all_cores()
    return cli.main(sweep)


if __name__ == "__main__":
    sys.exit(main())
