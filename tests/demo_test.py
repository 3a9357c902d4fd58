"""`make demo` end to end on a tiny curve: a thin wrapper over `jaxmoe sweep --preset softmax-ridge --overwrite`."""

import csv
import json

import jaxmoe.demo


def test_demo_writes_table_summary_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--sizes", "100,120,200", "--replicates", "3"]
    assert jaxmoe.demo.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "results.csv")))
    metrics = {"l2_error", "voronoi_d1", "exact_error", "overfit_error", "overfit_error_weighted", "cell_mass"}
    assert len(rows) == 3 * 3 * len(metrics) and {r["metric"] for r in rows} == metrics
    assert all(float(r["value"]) >= 0 for r in rows if r["value"] != "nan")
    summary = json.load(open(out / "summary.json"))
    assert summary["fits"]["count"] == 9 and summary["preset"] == "softmax-ridge"
    low, high = summary["metrics"]["l2_error"]["ci"]
    assert low <= summary["metrics"]["l2_error"]["slope"] <= high
    assert (out / "rate_curves.png").stat().st_size > 10_000 and (out / "rate_curves.pdf").exists()


def test_demo_bad_sizes(tmp_path, capsys):
    assert jaxmoe.demo.main(["--out", str(tmp_path), "--sizes", "100,abc"]) == 2
    assert "'100,abc': must be comma-separated integers" in capsys.readouterr().err
