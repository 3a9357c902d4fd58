"""The conditioning diagnostic of every Table 1 preset (issue 14, item 6): the exact-fitted Fisher spectrum and,
from the committed over-fitted profiles, the constant c of omega ~ c eps^m and the predicted onset n / sigma^2.

    .venv/bin/python experiments/conditioning.py [--profiles experiments/results/lower_bound/profiles.json]
    .venv/bin/python experiments/conditioning.py --profiles experiments/results/lower_bound/own_truths.json

Writes conditioning.json (own_conditioning.json for own_truths.json) next to the profiles; no optimisation (seconds).
"""

import argparse
import json
import os

from jaxmoe.bounds import conditioning
from jaxmoe.presets import get_preset
from lower_bound_profiles import own_rows, stored_profiles

FIELDS = ("fisher_min", "fisher_condition", "fisher_onset", "symmetry_dimension", "exponent", "constant",
          "asymptotic_eps", "onset")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default="experiments/results/lower_bound/profiles.json")
    args = ap.parse_args()
    out, own = {}, own_rows()
    for name, profiles in stored_profiles(args.profiles).items():
        setting = own[name][0]() if name in own else get_preset(name.split("/")[0])
        cond = conditioning(setting, next(iter(profiles.values())))  # the first r (pooled)
        out[name] = {f: getattr(cond, f) for f in FIELDS}
        print(name, " ".join(f"{f}={out[name][f]:.3g}" if isinstance(out[name][f], float) else f"{f}={out[name][f]}"
                             for f in FIELDS), flush=True)
    stem = "own_conditioning.json" if os.path.basename(args.profiles) == "own_truths.json" else "conditioning.json"
    path = os.path.join(os.path.dirname(args.profiles), stem)
    with open(path + ".tmp", "w") as fh:
        json.dump(out, fh, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
