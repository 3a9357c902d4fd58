"""Effective sample size n / sigma^2: the collapse test and the onset on synthetic curves whose answer is known,
and the grid report over a sigma factor (fake chunks: nothing compiled)."""

import json
import os
from typing import NamedTuple

import numpy as np
import pytest

import jaxmoe
from jaxmoe import JaxMoEInputError
from jaxmoe.sweeps import runner
from jaxmoe.sweeps.effective_size import (MATCH_RTOL, collapse_points, effective_size_report, format_effective_size,
                                          pooled_curve, rate_onset, sigma_groups)
from jaxmoe.sweeps.grid_report import load_grid_results
from sweep_fakes import fake_run_chunk

SIGMAS = 0.1 / np.sqrt(10.0) ** np.arange(4)  # sqrt(10) apart
SIZES = np.array([100, 316, 1000, 3162, 10000])  # half a decade apart: cells share n / sigma^2


class Cell(NamedTuple):  # the fields of a SweepResults the module reads
    sizes: np.ndarray
    metrics: dict
    fits: dict


def _cells(law, replicates=64, spread=0.3, seed=0):
    """[(sigma, Cell)] with metric "m" = law(sigma, n) * exp(spread z) per replicate."""
    rng = np.random.default_rng(seed)
    out = []
    for s in SIGMAS:
        z = rng.standard_normal((SIZES.size, replicates))
        m = law(s, SIZES[:, None].astype(float)) * np.exp(spread * z)
        ones = np.ones((SIZES.size, replicates), bool)
        out.append((float(s), Cell(SIZES, {"m": m}, {"converged": ones, "on_boundary": ~ones})))
    return out


def test_matched_points_are_the_sizes_at_equal_n_over_sigma_squared():
    points = collapse_points(_cells(lambda s, n: (s ** 2 / n) ** 0.5), "m", 200)
    # adjacent levels share 3 points, levels 10x apart 1 point, farther none: 3 * 3 + 2 * 1
    assert len(points) == 11
    for p in points:
        assert abs((p.n_a / p.sigma_a ** 2) / (p.n_b / p.sigma_b ** 2) - 1) <= MATCH_RTOL and p.sigma_a > p.sigma_b


def test_the_collapse_test_holds_its_level_and_rejects_a_law_of_sigma():
    """Coverage: metric = (sigma^2 / n)^(1/2) is a function of x only, so the family-wise test (Bonferroni
    over the 11 points) should reject in about 5% of grids (measured: 4.5% of 200 at 16 replicates, 6.0% at
    64): at most 10 of 100 here. Power: times sigma^(1/2), the log-ratio at adjacent levels is
    (1/2) log sqrt(10) = 0.58, and every grid must reject."""
    level = 1 - 0.05 / 11
    null = [collapse_points(_cells(lambda s, n: (s ** 2 / n) ** 0.5, 16, seed=seed), "m", 300, level, seed)
            for seed in range(100)]
    assert sum(not all(p.collapses for p in points) for points in null) <= 10
    for seed in range(20):
        bad = collapse_points(_cells(lambda s, n: s ** 0.5 * (s ** 2 / n) ** 0.5, 16, seed=seed), "m", 300, level,
                              seed)
        adjacent = [p for p in bad if p.sigma_a / p.sigma_b < 4]
        assert sum(not p.collapses for p in adjacent) >= 5  # of 9
        assert np.median([p.log_ratio for p in adjacent]) == pytest.approx(0.5 * np.log(np.sqrt(10)), abs=0.15)


def test_the_onset_is_where_the_window_slopes_enter_the_band():
    """Slope -0.1 up to x = 1e7, -0.5 after: the windows from 1e7 on have the theory's slope -0.5, every earlier
    one is shallower (with spread 0.05 its CI excludes -0.5), so the onset is 1e7; a theory slope of -1 is never
    reached."""
    def law(s, n):
        x = n / s ** 2
        return np.where(x <= 1e7, (x / 1e7) ** -0.1, (x / 1e7) ** -0.5)

    cells = _cells(law, spread=0.05)
    x, losses = pooled_curve(cells, "m")
    assert x.size == 11 and losses.shape == (3 * 64, 11)  # 1e4 .. 1e9 by half decades; up to 3 cells per x
    onset = rate_onset(x, losses, -0.5, 300)
    assert onset["onset"] == pytest.approx(1e7, rel=1e-3)
    assert all(w["in_band"] == (w["x_min"] >= 0.99e7) for w in onset["windows"])
    assert rate_onset(x, losses, -1.0, 300)["onset"] is None


def test_the_grid_report_over_sigma(tmp_path, monkeypatch):
    """Through the grid report: fake chunks give l2_error = n^-1/2 whatever sigma, which does not collapse
    in n / sigma^2 (log-ratio -0.5 log(n_a / n_b) = -2.30 at the one matched point, x = 1e6, with no spread:
    the replicates' ratio is the same), and the text says so."""
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    config = {"preset": "softmax-ridge", "sweep": {"sizes": [100, 1000, 10000], "replicates": 2},
              "grid": {"data.sigma": [0.1, 0.01, 0.0], "model.k_fit": [3, 4]}}  # sigma = 0: left out
    out = str(tmp_path / "grid")
    jaxmoe.run_sweep(jaxmoe.sweeps.grid_from_dict(config), out)
    summary = jaxmoe.sweeps.write_grid_report(out, num_bootstrap=50)
    ess = summary["effective_sample_size"]
    assert [g["factors"] for g in ess["groups"]] == [{"model.k_fit": 3}, {"model.k_fit": 4}]
    entry = ess["groups"][0]["metrics"]["l2_error"]
    assert entry["x"] == pytest.approx([1e4, 1e5, 1e6, 1e7, 1e8]) and entry["theory_slope"] == -0.5
    points = entry["collapse"]["points"]
    assert len(points) == 1 and not entry["collapse"]["collapses"] and (points[0]["n_a"], points[0]["n_b"]) == (10000, 100)
    np.testing.assert_allclose([p["log_ratio"] for p in points], 0.5 * np.log(0.01), rtol=1e-12)
    assert "effective_size.png" in summary["files"] and os.path.isfile(os.path.join(out, "effective_size.png"))
    with open(os.path.join(out, "summary.json")) as fh:
        assert json.load(fh)["effective_sample_size"]["groups"][1]["sigmas"] == [0.1, 0.01]
    text = format_effective_size(ess)
    assert "group 0 (model.k_fit=3): sigma 0.1, 0.01; converged >= 100% per n, on a face <= 0% per n" in text
    assert "l2_error               does NOT collapse (1 points; worst log-ratio -2.30 at x=1e+06)" in text
    predicted = effective_size_report(load_grid_results(out), 50, predicted_onsets={0: {"*": 2e14}})
    assert predicted["groups"][0]["metrics"]["l2_error"]["predicted_onset"] == 2e14
    assert predicted["groups"][1]["metrics"]["l2_error"]["predicted_onset"] is None


def test_bad_input_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    out = str(tmp_path / "grid")
    jaxmoe.run_sweep(jaxmoe.sweeps.grid_from_dict({"preset": "softmax-ridge", "sweep": {"sizes": [100, 200, 400],
                     "replicates": 2}, "grid": {"model.k_fit": [3, 4]}}), out)
    gres = load_grid_results(out)
    with pytest.raises(JaxMoEInputError, match=r"^grid=.*: needs a factor 'data.sigma' with two or more levels > 0"):
        sigma_groups(gres)
    assert jaxmoe.sweeps.write_grid_report(out, num_bootstrap=20)["effective_sample_size"] is None
    with pytest.raises(JaxMoEInputError, match=r"^predicted_onsets='list': must be None or a dict"):
        effective_size_report(gres, predicted_onsets=[1.0])
