"""The markdown tables of experiments/lower_bound.md from the committed results (no computation).

    .venv/bin/python experiments/lower_bound_tables.py [--dir experiments/results/lower_bound]
"""

import argparse
import json
import os


def _fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def _fmt_own(x) -> str:
    """`exponent_own`: one run's exponent (older files), or {per decade: exponent} of each run alone."""
    return " / ".join(_fmt(m) for m in x.values()) if isinstance(x, dict) else _fmt(x)


def _table(columns, rows) -> str:
    """A markdown table: header, separator, one line per row (lists of cell strings)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def verdict_table(path):
    with open(path) as fh:
        rows = json.load(fh)
    out = ["| row | d | loss | r | m_r (pooled; own run) | theory m_r | resolvable / at floor (of eps) | verdict | rate | "
           "Taylor: max rel. diff where both resolve |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rec in rows.items():
        by_r = rec["by_r"]
        rs = ", ".join("-" if r == "None" else f"{float(r):g}" for r in by_r)
        ms = ", ".join(f"{_fmt(p['exponent'])} ({_fmt_own(p.get('exponent_own'))})" for p in by_r.values())
        counts = ", ".join(f"{sum(p['profile']['resolvable'])} / {sum(p['at_floor'])}" for p in by_r.values())
        n_eps = len(next(iter(by_r.values()))["profile"]["eps"])
        taylor = ", ".join(_fmt((p.get("taylor") or {}).get("max_relative_difference"), ".1e") for p in by_r.values())
        theory = ", ".join(f"{m:g}" for m in rec["m_theory"])
        rate = _fmt(rec["rate"], ".3f")
        why = rec["why"].replace("|", "/")
        out.append(f"| {name} | {rec.get('d', 1)} | {rec['loss']} | {rs} | {ms} | {theory} | {counts} (of {n_eps}) | "
                   f"**{rec['verdict']}** ({why}) | {rate} | {taylor} |")
    return "\n".join(out)


def conditioning_table(path):
    with open(path) as fh:
        rows = json.load(fh)
    columns = ("row", "Fisher min eigenvalue", "condition", "symmetry dims", "m", "c", "power law below eps",
               "predicted onset n / sigma^2")
    return _table(columns, [[name, _fmt(c["fisher_min"], ".1e"), _fmt(c["fisher_condition"], ".1e"),
                             str(c["symmetry_dimension"]), _fmt(c["exponent"]), _fmt(c["constant"], ".1e"),
                             _fmt(c["asymptotic_eps"], ".2g"), _fmt(c["onset"], ".0e")] for name, c in rows.items()])


def bench_table(path):
    with open(path) as fh:
        rows = json.load(fh)
    columns = ("row", "d", "nodes", "cold s", "warm s", "target s", "(start, eps) converged / max_iter", "exponent",
               "max quadrature error")
    return _table(columns, [[name, str(b["d"]), f"{b['nodes_per_axis']}^{b['d']}", str(b["cold_seconds"]),
                             str(b["warm_seconds"]), f"{b['target_seconds']:g}",
                             f"{b['status_counts']['converged']} / {b['status_counts']['max_iter']}",
                             _fmt(b["exponent"]), f"{b['max_quadrature_error']:.1e}"] for name, b in rows.items()])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="experiments/results/lower_bound")
    args = ap.parse_args()
    for title, fn, name in (("verdicts, presets", verdict_table, "profiles.json"),
                            ("verdicts, own truths", verdict_table, "own_truths.json"),
                            ("conditioning, presets", conditioning_table, "conditioning.json"),
                            ("conditioning, own truths", conditioning_table, "own_conditioning.json"),
                            ("speed", bench_table, "bench.json")):
        path = os.path.join(args.dir, name)
        if os.path.exists(path):
            print(f"### {title}\n\n{fn(path)}\n")


if __name__ == "__main__":
    main()
