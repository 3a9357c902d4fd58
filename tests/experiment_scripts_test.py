"""The experiment scripts' own bookkeeping (no fits): what they write keeps what was written before."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))

from lower_bound_profiles import save_row  # noqa: E402


def test_saving_a_row_keeps_the_other_rows_and_replaces_its_own(tmp_path):
    path = str(tmp_path / "profiles.json")
    save_row(path, "softmax-ridge", {"verdict": "polynomial"})
    save_row(path, "hierarchical-ridge", {"verdict": "inconclusive"})
    save_row(path, "softmax-ridge", {"verdict": "rerun"})
    assert json.loads(open(path).read()) == {"softmax-ridge": {"verdict": "rerun"},
                                             "hierarchical-ridge": {"verdict": "inconclusive"}}
    assert os.listdir(tmp_path) == ["profiles.json"]  # the temporary file was renamed, not left behind


def test_stored_leave_outs_give_the_verdict_the_run_gave(tmp_path):
    # a stored pooled profile (m = 1) whose leave-out of run "16" has m = 0.85: --verdicts-from applies the rule
    import numpy as np
    from lower_bound_profiles import stored_profiles

    from jaxmoe.bounds import bound_verdict
    eps = np.geomspace(1.0, 1e-4, 33)

    def profile(m):
        omega = 1e-3 * eps ** m
        return {"eps": eps.tolist(), "omega": omega.tolist(), "loss_found": eps.tolist(), "spread": [0.0] * 33,
                "kept_starts": [1] * 33, "floor": [1e-30] * 33, "resolvable": [True] * 33}
    by_r = {"None": {"r": None, "exponent": 1.0, "profile": profile(1.0),
                     "without_run_profiles": {"16": {"exponent": 0.85, "profile": profile(0.85)},
                                              "8": {"exponent": 1.0, "profile": profile(1.0)}}}}
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"row": {"loss": "d1", "r": None, "symmetry_loss": {}, "by_r": by_r}}))
    profiles = stored_profiles(str(path))["row"]
    assert set(profiles[None].without_run) == {"16", "8"}
    got = bound_verdict(profiles)
    assert got.verdict == "inconclusive" and "'16'" in got.why
    del by_r["None"]["without_run_profiles"]  # a file written before leave-outs were stored: the pooled rule only
    path.write_text(json.dumps({"row": {"loss": "d1", "r": None, "symmetry_loss": {}, "by_r": by_r}}))
    assert bound_verdict(stored_profiles(str(path))["row"]).verdict == "polynomial"
