"""The report's cost, part by part, on one sweep folder, and the plots with mathtext or plain tick labels.

    .venv/bin/python experiments/bench_report.py DIR [--repeats 5]

DIR is any sweep folder (e.g. one `jaxmoe sweep --preset softmax-ridge --sizes 500,1000 --replicates 4` made).
In one process, alternating: `report.plot_curves` with the log axes' labels as matplotlib's mathtext (what
matplotlib's formatter gives; `plain_tick_label` replaced by the identity) and as plain Unicode text (the
report's default), each into a temporary stem; then `summarize` and the parquet table once each. Prints the
medians (seconds) and every run as JSON. The first plot of a process pays matplotlib's font loading: it is run
once before the timed runs and not counted.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from jaxmoe.sweeps import report


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    res = report.load_results(args.folder)
    summary = report.summarize(res)
    stem = os.path.join(tempfile.mkdtemp(prefix="bench-report-"), "rate_curves")
    plain = report.plain_tick_label
    report.plot_curves(res, summary, stem)  # warm-up: fonts
    runs = {"mathtext": [], "plain": []}
    for _ in range(args.repeats):
        for name in runs:
            report.plain_tick_label = plain if name == "plain" else (lambda label: label)
            runs[name].append(_timed(lambda: report.plot_curves(res, summary, stem)))
    report.plain_tick_label = plain
    parts = {"summarize": _timed(lambda: report.summarize(res)),
             "parquet": _timed(lambda: report.write_parquet_or_note(stem + ".parquet", report.sweep_columns(res), {}))}
    medians = {f"plot_{k}": statistics.median(v) for k, v in runs.items()} | parts
    print(json.dumps({"folder": args.folder, "medians_s": medians, "runs_s": runs}, indent=1))


if __name__ == "__main__":
    main()
