"""A reduced Table 1 check for CI (issue 4): small n range, few replicates, generous bounds.

The full-size runs are `jaxmoe table1` (rows in experiments/configs/table1/; the earlier results of
experiments/table1.py are in experiments/README.md). Here: `jaxmoe table1` on two rows with real fits (3 sizes,
8 replicates, over-fitted), where the regression L2 error falls like n^-1/2 (Prop. 1) for a polynomial row and
a slow row; and an exactly-fitted softmax-ridge truth (sigma = 0.01, see the fixture) whose Voronoi loss D1 and
exact-fitted parameter errors fall like n^-1/2 (Theorem 1). Bounds are wide (+-0.2 around the theory) because
8 replicates at 3 sizes leave bootstrap CIs about that wide; the slope estimates themselves are asserted.
"""

import json

import jax
import numpy as np
import pytest

import jaxmoe
from jaxmoe.cli import main

SIZES = [250, 1000, 4000]
REPLICATES = 8


@pytest.fixture(scope="module")
def exact_ridge():
    # At n <= 4000 the preset's exact-fitted errors are ~600 sigma / sqrt(n) (its experts' pre-activations
    # stay in sigmoid's near-linear range, close to the linear expert's degeneracy), so the slope is not yet
    # -1/2 there. Experts spanning the whole sigmoid (pre-activation 8x - 4 in [-4, 4] where active) and
    # sigma = 0.01 put n <= 4000 in the asymptotic regime (measured D1 slope -0.45; sigma / sqrt(n) sets it).
    base = jaxmoe.get_preset("softmax-ridge")
    truth = base.truth._replace(eta={"a": np.array([[8.0], [-8.0]]), "b": np.array([-4.0, -4.0])})
    setting = base.replace(truth=truth, k_fit=2, sigma=0.01)
    with jax.enable_x64(True):
        fit = jaxmoe.fit_curve(setting, SIZES, REPLICATES, seed=3)
    return setting, fit


def _slope(values):
    return jaxmoe.loglog_slope(SIZES, np.asarray(values).T, num_bootstrap=200, seed=0).slope


def test_exact_fitted_ridge_l2_d1_and_parameters_at_root_n(exact_ridge):
    setting, fit = exact_ridge
    assert fit.converged_fraction == 1.0
    metrics = jaxmoe.curve_metrics(setting, fit)
    assert -0.7 <= _slope(metrics["l2_error"]) <= -0.3
    assert -0.7 <= _slope(metrics["voronoi_d1"]) <= -0.3
    with jax.enable_x64(True):
        flat = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((-1,) + a.shape[2:]), fit.params)
        errors = jax.vmap(lambda p: jaxmoe.parameter_errors(p, setting.truth))(flat)
    exact = np.asarray(errors.exact_error).reshape(fit.objective.shape)
    assert np.all(np.isfinite(exact))  # k = k*: every cell holds one atom
    assert -0.7 <= _slope(exact) <= -0.3


def test_reduced_jaxmoe_table1_l2_error_at_root_n(tmp_path):
    """`jaxmoe table1` end to end with real fits on two rows (a polynomial and a slow row), over-fitted: the
    L2 error's median falls like n^-1/2 in both, every fit beats the truth's objective, and the report carries a
    verdict per metric. 8 starts, not the default 32: the L2 rate does not need the global minimum (by the basic
    inequality any fit whose objective is below the truth's is O_P(sigma / sqrt(n)) from f* in L2), and 32 starts
    made these the suite's slowest fits."""
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("softmax-ridge", "softmax-linear"):
        (configs / f"{name}.toml").write_text(f'preset = "{name}"\n[sweep]\nsizes = {SIZES}\nreplicates = '
                                             f'{REPLICATES}\nseed = 4\n[solver]\nrestarts = 8\n')
    out = tmp_path / "t1"
    assert main(["table1", "--configs", str(configs), "--out", str(out), "--bootstrap", "200", "--no-plots"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["row"] for r in summary["rows"]] == ["softmax-ridge", "softmax-linear"]
    for row in summary["rows"]:
        [variant] = row["variants"]
        assert variant["converged_fraction"] >= 0.9
        fits = json.loads((out / row["row"] / "summary.json").read_text())["fits"]
        assert fits["below_truth_fraction"] == 1.0  # least squares beats the truth on its own data
        l2 = variant["metrics"]["l2_error"]
        assert -0.7 <= l2["slope"] <= -0.3 and l2["statistic"] == "median"
        assert l2["verdict"] in ("met", "inconclusive (CI wider than the band)", "unconverged")
    assert variant["metrics"]["voronoi_d1"]["verdict"] == "lower-bound row"  # softmax-linear: Theorem 2
    assert (out / "table1.md").read_text().count("| softmax-") == 2
