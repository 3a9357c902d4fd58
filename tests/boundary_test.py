"""Fits on a face of the box Theta flagged (`MoEFamily.on_boundary`): every preset's truth inside, one free
coordinate moved to a face flagged, the relative tolerance on both sides, gauge-pinned coordinates never faces,
batch axes kept; and the flag in results.csv, results.parquet, summary.json and the text summary (fake chunks)."""

import csv
import os

import jax
import numpy as np
import pytest

import jaxmoe
from jaxmoe import PRESET_NAMES, get_preset
from jaxmoe.families.base import BOUNDARY_RTOL
from jaxmoe.sweeps import runner
from sweep_fakes import fake_run_chunk


def _flat(model, params):
    flat, unravel = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(np.asarray, model.fix_gauge(params)))
    lo, hi = (np.asarray(jax.flatten_util.ravel_pytree(b)[0]) for b in model.bounds(gauge=True))
    return np.asarray(flat, np.float64), unravel, lo, hi


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_free_coordinate_at_a_face_is_flagged_and_the_truth_is_not(preset):
    setting = get_preset(preset)
    model = setting.model
    flat, unravel, lo, hi = _flat(model, setting.truth)
    assert not model.on_boundary(unravel(flat))
    free = model.free_coordinates()
    pinned = np.setdiff1d(np.arange(flat.size), free)
    width = hi - lo
    cases = []
    for i, side in ((free[0], "hi"), (free[-1], "lo")):
        for distance, expected in ((0.0, True), (0.5 * BOUNDARY_RTOL, True), (2 * BOUNDARY_RTOL, False)):
            moved = flat.copy()
            moved[i] = hi[i] - distance * width[i] if side == "hi" else lo[i] + distance * width[i]
            cases.append((moved, expected))
    batch = np.stack([c for c, _ in cases]).reshape(2, 3, -1)  # two batch axes
    params = jax.vmap(jax.vmap(unravel))(batch)
    np.testing.assert_array_equal(model.on_boundary(params), np.array([e for _, e in cases]).reshape(2, 3))
    if pinned.size:  # the gauge's pinned coordinates sit at lower = upper = 0: not a face
        assert np.all(width[pinned] == 0) and not model.on_boundary(unravel(flat))


def _faced_run_chunk(config, setting, chunk, errors_fn=None):
    """A fake chunk whose replicate 0 has its first expert coordinate on the box's upper face."""
    arrays, info = fake_run_chunk(config, setting, chunk, errors_fn)
    name = next(k for k in arrays if k.startswith("param/eta"))
    arrays[name][:, 0] = config.spec["model"]["box"]["expert"]
    return arrays, info


def test_the_flag_reaches_the_table_the_summary_and_the_text(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_chunk", _faced_run_chunk)
    out = str(tmp_path / "out")
    raw = {"preset": "softmax-ridge", "sweep": {"sizes": [100, 200, 400], "replicates": 2}}
    summary = jaxmoe.run_sweep(raw, out, num_bootstrap=20).summary
    assert summary["fits"]["boundary_fraction"] == 0.5 and summary["fits"]["boundary_fraction_by_n"] == [0.5] * 3
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    assert {(r["replicate"], r["on_boundary"]) for r in rows} == {("0", "True"), ("1", "False")}
    frame = jaxmoe.load_results(out, frame="pandas")
    assert frame["on_boundary"].dtype == bool and frame["on_boundary"].sum() == 3
    assert "on a face of the box 50.0%" in jaxmoe.format_summary(summary).splitlines()[0]
