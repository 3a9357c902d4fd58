"""`make demo` end to end on a tiny curve: table, summary and plot are written and consistent."""

import csv
import json

import jaxmoe.demo


def test_demo_writes_table_summary_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    assert jaxmoe.demo.main(["--out", str(out), "--sizes", "100,200,400", "--replicates", "3"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    # 3 sizes x 3 replicates x (objective, l2_error, voronoi_d1)
    assert len(rows) == 27
    assert {r["metric"] for r in rows} == {"objective", "l2_error", "voronoi_d1"}
    assert all(float(r["value"]) >= 0 for r in rows)
    summary = json.load(open(out / "summary.json"))
    assert summary["fits"]["fits"] == 9
    assert set(summary["slopes"]) == {"l2_error", "voronoi_d1"}
    low, high = summary["slopes"]["l2_error"]["ci"]
    assert low <= summary["slopes"]["l2_error"]["slope"] <= high
    assert (out / "rate_curve.png").stat().st_size > 10_000


def test_demo_bad_sizes(tmp_path, capsys):
    assert jaxmoe.demo.main(["--out", str(tmp_path), "--sizes", "100,abc"]) == 2
    assert "--sizes='100,abc': must be comma-separated integers" in capsys.readouterr().err
