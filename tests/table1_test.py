"""`jaxmoe table1`: the six committed row configs, the verdict rule on closed cases, the run / resume / report-only
cycle and every bad input on fake chunks (no fits), and summary.json's rate keys.

The reduced real run of Table 1 for CI (fits, not fakes) is tests/table1_reduced_test.py."""

import glob
import json
import os
import pathlib

import numpy as np
import pytest

import jaxmoe
from jaxmoe import sweeps
from jaxmoe.cli import main
from jaxmoe.presets import PRESET_NAMES
from jaxmoe.sweeps import runner
from jaxmoe.sweeps.effective_size import MATCH_RTOL, SLOPE_BAND
from jaxmoe.sweeps.table1 import MIN_CONVERGED, rate_verdict
from jaxmoe.validation import JaxMoEInputError
from sweep_fakes import fake_run_chunk

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs" / "table1"


def test_the_committed_rows_are_table_1_in_order_with_their_five_variants():
    rows = sweeps.load_rows(str(CONFIGS))
    assert [name for name, _ in rows] == list(PRESET_NAMES)
    for name, grid in rows:
        specs = [c.config.spec for c in grid.cells]
        assert [s.get("preset") for s in specs] == [name] * 5
        labels = [sweeps.variant_label(s) for s in specs]
        assert sum("least squares" in label and "over-fitted" in label for label in labels) == 3
        assert sum(label.startswith("exact-fitted") for label in labels) == 1
        assert labels[-1].startswith("over-fitted") and "oracle-initialised (0.005 n^-0.083)" in labels[-1]
        sigmas = [s["data"]["sigma"] for s in specs[:3]]
        np.testing.assert_allclose(np.array(sigmas[:-1]) / np.array(sigmas[1:]), np.sqrt(10), rtol=1e-5)
        # consecutive sigmas share n / sigma^2 at all but 2 of the 7 sizes (the collapse test's matched points)
        sizes = np.asarray(grid.cells[0].config.sizes, float)
        x = [sizes / s ** 2 for s in sigmas]
        matched = [np.sum(np.min(np.abs(a[:, None] / b[None, :] - 1), axis=1) <= MATCH_RTOL) for a, b in zip(x, x[1:])]
        assert matched == [5, 5]
        gtol = [s["solver"]["options"]["gtol"] for s in specs[:3]]
        np.testing.assert_allclose(gtol, [1e-9 * (s / 0.1) ** 2 for s in sigmas])  # stopping scales with sigma^2


def _entry(windows, ci, theory=-0.5, theory_text="n^-1/2", note=None):
    return {"theory_slope": theory, "theory": theory_text, "median_slope": None if note else float(np.mean(ci)),
            "median_ci": ci, "note": note, "window_stable": True,
            "window_slopes": [{"n_min": n, "statistic": "median", "slope": b, "ci": [lo, hi]}
                              for n, b, lo, hi in windows]}


@pytest.mark.parametrize("windows, ci, expected, onset", [
    ([(100, -0.52, -0.6, -0.45), (1000, -0.49, -0.6, -0.4)], [-0.58, -0.46], "met", 100),
    ([(100, -0.2, -0.25, -0.15), (1000, -0.45, -0.55, -0.4), (1e4, -0.5, -0.59, -0.41)], [-0.3, -0.2],
     "met from n >= 1e3", 1000),
    ([(100, -0.2, -0.25, -0.15), (1000, -0.18, -0.3, -0.1)], [-0.25, -0.15], "flatter", None),
    ([(100, -0.9, -1.0, -0.8), (1000, -0.85, -1.0, -0.7)], [-1.0, -0.8], "steeper", None),
    ([(100, -0.35, -0.45, -0.25)], [-0.45, -0.25], "inconclusive", None),
    ([(100, -0.5, -0.8, -0.2)], [-0.8, -0.2], "inconclusive (CI wider than the band)", None),
    ([(100, -0.2, -0.25, -0.15), (1000, -0.5, -0.8, -0.2)], [-0.3, -0.2], "inconclusive (CI wider than the band)",
     None),  # the regime's window is in the band only because its CI is wide
    # the band edge: |slope - theory| = 0.1 is in the band, a hair more is not
    ([(100, -0.5 + SLOPE_BAND, -0.5, -0.35)], [-0.5, -0.35], "met", 100),
    ([(100, -0.5 + SLOPE_BAND + 1e-9, -0.5, -0.35)], [-0.5, -0.35], "inconclusive", None),
])
def test_rate_verdict_closed_cases(windows, ci, expected, onset):
    v = rate_verdict(_entry(windows, ci), converged_fraction=1.0)
    assert v["verdict"] == expected and v["onset_n"] == onset and v["statistic"] == "median"


def test_rate_verdict_withholds_the_rate_of_unconverged_fits_and_names_the_other_cases():
    entry = _entry([(100, -0.5, -0.55, -0.45)], [-0.55, -0.45])
    v = rate_verdict(entry, converged_fraction=MIN_CONVERGED - 0.01)
    assert v["verdict"] == "unconverged" and v["rate_verdict_if_converged"] == "met"
    assert rate_verdict(entry, converged_fraction=MIN_CONVERGED)["verdict"] == "met"
    slow = {**entry, "theory_slope": None, "theory": "slower than any polynomial (Theorem 2: linear experts)"}
    assert rate_verdict(slow, 1.0)["verdict"] == "lower-bound row"
    assert rate_verdict({**slow, "theory": "unknown: no rate"}, 1.0)["verdict"] == "no theory"
    none = rate_verdict(_entry([], [None, None], note="losses: needs at least 3 sample sizes"), 1.0)
    assert none["verdict"] == "no slope" and "3 sample sizes" in none["note"]


ROW_GRID = """preset = "softmax-ridge"
[sweep]
sizes = [100, 316, 1000, 3162]
replicates = 2
[grid]
"data.sigma" = [0.1, 0.0316228, 0.1]
"model.k_fit" = [3, 3, 2]
zip = [["data.sigma", "model.k_fit"]]
"""
ROW_SWEEP = """preset = "softmax-linear"
[sweep]
sizes = [100, 316, 1000]
replicates = 2
"""


@pytest.fixture
def configs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "b-linear.toml").write_text(ROW_SWEEP)
    (folder / "a-ridge.toml").write_text(ROW_GRID)
    return folder


def _chunks(folder):
    return glob.glob(os.path.join(folder, "**", "chunk-*.npz"), recursive=True)


def test_run_resume_and_report_only_on_fake_chunks(configs, tmp_path):
    out = tmp_path / "t1"
    rows = sweeps.load_rows(str(configs))
    assert [name for name, _ in rows] == ["a-ridge", "b-linear"]  # Table 1's order: softmax-ridge first
    summary = sweeps.run_table1(rows, str(out), num_bootstrap=20, plots=False).summary
    assert [r["row"] for r in summary["rows"]] == ["a-ridge", "b-linear"] and summary["complete"]
    ridge, linear = summary["rows"]
    assert [v["sigma"] for v in ridge["variants"]] == [0.1, 0.0316228, 0.1]
    assert linear["variants"][0]["values"] == {} and linear["effective_sample_size"] == []
    l2 = ridge["variants"][0]["metrics"]["l2_error"]  # fake chunks: l2 = n^-1/2 exactly (x 1.0, 1.1)
    assert l2["slope"] == pytest.approx(-0.5) and l2["verdict"] == "met" and l2["statistic"] == "median"
    [group] = ridge["effective_sample_size"]  # the two over-fitted sigmas; the exact-fitted cell stands alone
    assert group["sigmas"] == [0.1, 0.0316228] and "l2_error" in group["metrics"]
    text = (out / "table1.md").read_text()
    assert text.count("| a-ridge |") == 3 + 1 and "| b-linear | over-fitted k = 3, least squares, best of 32" in text
    assert json.loads((out / "summary.json").read_text())["rows"][0]["row"] == "a-ridge"
    before = sorted(_chunks(out))
    assert len(before) == 3 * 4 + 3
    with pytest.raises(JaxMoEInputError, match=r"already holds this grid .*pass --resume"):
        sweeps.run_table1(rows, str(out), num_bootstrap=20, plots=False)
    again = sweeps.run_table1(rows, str(out), resume=True, num_bootstrap=20, plots=False)
    assert all(r.computed == [] for r in again.rows["a-ridge"].cells) and again.rows["b-linear"].computed == []
    assert sorted(_chunks(out)) == before
    assert main(["table1", "--out", str(out), "--report-only", "--rows", "b-linear", "--bootstrap", "20",
                 "--no-plots"]) == 0
    assert "a-ridge" not in (out / "table1.md").read_text()


def test_a_row_folder_that_cannot_run_is_refused_before_any_fit(configs, tmp_path):
    out = tmp_path / "t1"
    other = jaxmoe.run_sweep({"preset": "softmax-linear", "sweep": {"sizes": [100, 200, 400], "replicates": 2}},
                             str(out / "b-linear"), num_bootstrap=20, plots=False)
    assert other.computed
    message = r"^out='.*b-linear': holds a sweep of another config \(folder vs this run: name: \"softmax-linear\""
    with pytest.raises(JaxMoEInputError, match=message):
        sweeps.run_table1(sweeps.load_rows(str(configs)), str(out), num_bootstrap=20, plots=False)
    assert not os.path.exists(out / "a-ridge")  # the first row did not start


@pytest.mark.parametrize("args, message", [
    (["--configs", "nowhere"], "--configs='nowhere': no such folder"),
    (["--rows", "a-ridge,nope"], "--rows='nope': unknown row; "),
    (["--sizes", "100,100"], "--sizes"),
    (["--replicates", "0"], "--replicates"),
    (["--rows", ","], "--rows"),
])
def test_bad_input_is_one_line_and_exit_2(configs, tmp_path, capsys, args, message):
    argv = ["table1", "--configs", str(configs), "--out", str(tmp_path / "t1"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not os.path.exists(tmp_path / "t1")


def test_predicted_onsets_sit_next_to_the_measured_ones(configs, tmp_path, capsys):
    out = tmp_path / "t1"
    sweeps.run_table1(sweeps.load_rows(str(configs)), str(out), num_bootstrap=20, plots=False)
    onsets = tmp_path / "onsets.json"
    onsets.write_text(json.dumps({"a-ridge": {"onset": 6.3e14, "fisher_onset": 4.6e5, "fisher_min": 2e-6}}))
    assert main(["table1", "--out", str(out), "--report-only", "--onsets", str(onsets), "--bootstrap", "20",
                 "--no-plots", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"][0]["predicted_onset"] == {"onset": 6.3e14, "fisher_onset": 4.6e5}
    assert summary["rows"][1]["predicted_onset"] == {"onset": None, "fisher_onset": None}
    lines = [line for line in (out / "table1.md").read_text().splitlines() if "| a-ridge | over-fitted" in line
             and "| l2_error |" in line]
    assert lines and lines[0].endswith("| 6.3e14; 4.6e5 (beyond reach) |")
    for text, message in (("[1, 2]", "--onsets='list': must be a JSON object"),
                          ('{"a-ridge": {"onset": -1}}', "--onsets[a-ridge].onset=-1: must be a number > 0"),
                          ("{", "is not JSON")):
        onsets.write_text(text)
        assert main(["table1", "--out", str(out), "--report-only", "--onsets", str(onsets)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert main(["table1", "--out", str(out), "--report-only", "--onsets", str(tmp_path / "none.json")]) == 2
    assert "could not be read" in capsys.readouterr().err


def _with_loss(config, setting, chunk, errors_fn=None):
    """A fake chunk with a Voronoi loss too (D1 = 2 n^-1/2), so the rows have a curve to plot."""
    arrays, info = fake_run_chunk(config, setting, chunk, errors_fn)
    arrays["metric/voronoi_d1"] = 2.0 * arrays["metric/l2_error"]
    return arrays, info


def test_the_plot_has_a_panel_per_row_and_a_curve_per_variant(configs, tmp_path, monkeypatch):
    from jaxmoe.sweeps.table1 import table1_figure

    monkeypatch.setattr(runner, "run_chunk", _with_loss)
    out = tmp_path / "t1"
    summary = sweeps.run_table1(sweeps.load_rows(str(configs)), str(out), num_bootstrap=20).summary
    fig = table1_figure(summary)
    ridge, linear = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in (ridge, linear)] == ["a-ridge", "b-linear"]
    assert ridge.get_xlabel() == "effective sample size n / sigma^2"
    solid = [line for line in ridge.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in ridge.get_lines() if line.get_linestyle() == "--"]
    assert len(solid) == 3 and len(dashed) == 3  # three variants, each with its theory line (-1/2)
    x, y = solid[1].get_data()
    np.testing.assert_allclose(x, np.array([100, 316, 1000, 3162]) / 0.0316228 ** 2)  # against n / sigma^2
    assert len([line for line in linear.get_lines() if line.get_linestyle() == "--"]) == 0  # slow: no slope
    assert summary["files"] == ["table1.md", "summary.json", "table1.png", "table1.pdf"]
    assert (out / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = (out / "table1.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and b"CreationDate" not in pdf  # re-reporting leaves it byte-identical
    sweeps.write_table1_report(str(out), ["a-ridge", "b-linear"], num_bootstrap=20)
    assert (out / "table1.pdf").read_bytes() == pdf


def test_report_only_of_a_folder_without_rows_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["table1", "--out", str(tmp_path / "empty"), "--report-only"]) == 2
    assert "holds no row folder" in capsys.readouterr().err


def test_dry_run_lists_rows_and_variants_without_fitting(configs, tmp_path, capsys):
    assert main(["table1", "--configs", str(configs), "--out", str(tmp_path / "t1"), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [r["row"] for r in plan["rows"]] == ["a-ridge", "b-linear"] and plan["rows"][0]["fits"] == 3 * 4 * 2
    assert not os.path.exists(tmp_path / "t1")


def test_summary_has_the_rate_keys_of_issue_16(tmp_path, monkeypatch):
    """quantile_slopes / theil_sen / window_slopes / window_stable per metric, boundary_fraction at the top; on
    fake chunks whose l2_error is n^-1/2 x (1.0, 1.1) every slope is -1/2 exactly and every window is stable."""
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    raw = {"preset": "softmax-ridge", "sweep": {"sizes": [100, 200, 400, 800], "replicates": 2}}
    summary = jaxmoe.run_sweep(raw, str(tmp_path / "s"), num_bootstrap=20, plots=False).summary
    l2 = summary["metrics"]["l2_error"]
    assert set(l2["quantile_slopes"]) == {"0.5", "0.75", "0.9"}
    for fit in [*l2["quantile_slopes"].values(), l2["theil_sen"]]:
        assert fit["slope"] == pytest.approx(-0.5) and fit["ci"][0] <= -0.5 <= fit["ci"][1]
    assert [w["n_min"] for w in l2["window_slopes"]] == [100, 200]
    assert all(w["statistic"] == "median" and w["slope"] == pytest.approx(-0.5) for w in l2["window_slopes"])
    assert l2["window_stable"] is True and summary["boundary_fraction"] == summary["fits"]["boundary_fraction"] == 0.0


def test_a_panel_without_a_slope_still_draws_the_theory_and_counts_non_finite_values(tmp_path, monkeypatch):
    """Two sizes (no slope): the theory's line is drawn through the means, the note and the count of non-finite
    values sit in the title (never over the legend), the axes are labelled in words."""
    from matplotlib.figure import Figure

    from jaxmoe.sweeps.report import metric_panel

    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)
    raw = {"preset": "softmax-ridge", "sweep": {"sizes": [100, 400], "replicates": 2}}
    summary = jaxmoe.run_sweep(raw, str(tmp_path / "s"), num_bootstrap=10, log=lambda line: None).summary
    entry = {**summary["metrics"]["l2_error"], "nonfinite": [1, 0]}
    assert entry["slope"] is None and entry["theory_slope"] == -0.5
    ax = Figure().subplots()
    metric_panel(ax, np.array([100.0, 400.0]), "l2_error", entry)
    theory = [line for line in ax.get_lines() if line.get_label() == "theory: slope -0.5"]
    assert len(theory) == 1
    x, y = theory[0].get_data()
    assert y[1] / y[0] == pytest.approx(2.0 ** -1)  # slope -1/2 over a factor 4 in n
    title = ax.get_title()
    assert title.startswith("l2_error (1 non-finite values)\nno slope: ") and "sample size n" == ax.get_xlabel()
    assert os.path.isfile(tmp_path / "s" / "rate_curves.png")


@pytest.mark.parametrize("value, label", [(1e-3, "10\u207b\u00b3"), (100.0, "10\u00b2"), (1.0, "10\u2070"),
                                          (2e-3, "2\u00d710\u207b\u00b3"), (5e2, "5\u00d710\u00b2")])
def test_log_tick_labels_are_plain_text_with_the_formatters_value(value, label):
    """matplotlib's log formatter gives mathtext; the report shows the same number as plain Unicode text."""
    from matplotlib.ticker import LogFormatterSciNotation

    from jaxmoe.sweeps.report import plain_tick_label

    fmt = LogFormatterSciNotation(labelOnlyBase=False)
    assert plain_tick_label(fmt(value)) == label
    assert plain_tick_label("$\\mathdefault{\\alpha}$") == "$\\mathdefault{\\alpha}$"  # not a number: left alone
    assert plain_tick_label("0.5") == "0.5"


def test_a_panels_notes_are_wrapped_to_its_width_and_its_ticks_are_not_mathtext():
    """A long note takes at most two title lines of NOTE_WIDTH characters; no tick label needs mathtext."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxmoe.sweeps.report import NOTE_WIDTH, metric_panel

    ns = np.array([100.0, 1000.0, 10000.0])
    entry = {"mean": [1.0, 0.3, 0.1], "mean_ci_low": [0.5, 0.2, 0.05], "mean_ci_high": [2.0, 0.5, 0.2],
             "level": 0.95, "slope": None, "note": "word " * 80, "theory_slope": -0.5, "nonfinite": [0, 0, 0]}
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    metric_panel(ax, ns, "voronoi_d1", entry)
    lines = ax.get_title().split("\n")
    assert lines[0] == "voronoi_d1" and len(lines) == 3 and all(len(line) <= NOTE_WIDTH for line in lines)
    assert lines[2].endswith("...")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels() + ax.yaxis.get_ticklabels() if t.get_text()]
    assert "10\u00b3" in labels and not any("$" in label for label in labels)
