"""What writing a sweep's rate curves costs, `save_figure` (one draw per file) against the two-draw save that
`tight_layout()` + `savefig` gives (matplotlib keeps a placeholder layout engine, so each savefig lays the figure
out again), side by side in one process, alternating, on the same figure; checks the bytes are the same.

    .venv/bin/python -m jaxmoe sweep --preset softmax-ridge --sizes 500,1000 --replicates 4 --out /tmp/plotcost
    .venv/bin/python experiments/plot_cost.py /tmp/plotcost [--repeats 10] [--json OUT.json]
"""
import argparse
import io
import json
import os
import statistics
import time

from matplotlib.figure import Figure

from jaxmoe.sweeps import atomic_write_json
from jaxmoe.sweeps.figures import save_figure
from jaxmoe.sweeps.report import load_results, metric_panel, summarize
from shared import positive_int


def figure(res, summary):
    names = list(res.metrics)
    cols = min(3, len(names))
    fig = Figure(figsize=(4.3 * cols, 3.5 * -(-len(names) // cols)))
    for ax, name in zip(fig.subplots(-(-len(names) // cols), cols, squeeze=False).flat, names):
        metric_panel(ax, res.sizes.astype(float), name, summary["metrics"][name])
    return fig


def two_draws(fig, stem):
    fig.tight_layout()
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=120, **({"metadata": {"CreationDate": None}} if fmt == "pdf" else {}))
        with open(f"{stem}.{fmt}", "wb") as fh:
            fh.write(buf.getvalue())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a finished sweep folder (jaxmoe sweep --out)")
    p.add_argument("--repeats", type=positive_int, default=10)
    p.add_argument("--json", help="write the timings here")
    a = p.parse_args()
    if not os.path.isfile(os.path.join(a.folder, "summary.json")):
        p.error(f"folder={a.folder}: must be a finished sweep folder (with summary.json)")
    res = load_results(a.folder)
    summary = summarize(res, 1000, 0.95)
    ways = {"save_figure": lambda f, s: save_figure(f, s, dpi=120, pdf_metadata={"CreationDate": None}),
            "two_draws": two_draws}
    seconds = {k: [] for k in ways}
    for name, way in ways.items():  # warm-up: fonts, backends
        way(figure(res, summary), f"/tmp/plot_cost_{name}")
    for _ in range(a.repeats):
        for name, way in ways.items():
            fig = figure(res, summary)
            t = time.perf_counter()
            way(fig, f"/tmp/plot_cost_{name}")
            seconds[name].append(time.perf_counter() - t)
    same = {fmt: open(f"/tmp/plot_cost_save_figure.{fmt}", "rb").read() == open(f"/tmp/plot_cost_two_draws.{fmt}",
                                                                             "rb").read() for fmt in ("png", "pdf")}
    out = {"median_seconds": {k: statistics.median(v) for k, v in seconds.items()}, "seconds": seconds,
           "same_bytes": same, "panels": len(res.metrics)}
    print(json.dumps(out["median_seconds"]), "same bytes:", same)
    if a.json:
        atomic_write_json(a.json, out)  # complete or absent


if __name__ == "__main__":
    main()
