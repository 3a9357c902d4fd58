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
