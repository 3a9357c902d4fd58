r"""Reports of a grid folder (`jaxmoe.sweeps.grid`): one table, one summary and one figure over its cells.

- `results.csv`: the rows of every cell's `results.csv` (`report.COLUMNS`), each led by the cell's id
  (`cell`) and one column per factor, named by its path (`data.sigma`), holding the cell's level (a table or
  list level, e.g. a whole truth, as its position in the factor's list: `grid.json` has the values).
- `results.parquet`: the same with typed columns (`grid_columns`; schema in `jaxmoe.sweeps.table`).
- `summary.json`: the grid (name, hash, factors, zip groups), `complete`, and per cell a record with its
  values, folder and the cell's own summary (`report.summarize`: fit counts, slopes with CIs, theory) or
  `null` for a cell with no completed chunk yet; `slopes`: one row per (cell, metric) with the slope of the
  mean and its CI, the slope of the median, the theory's slope and the cell's converged and on-the-box-face fractions.
- `summary.json`'s `effective_sample_size`, for a grid over `data.sigma` (two or more levels; else null): the
  metrics against n / sigma^2, the collapse test and the onset per group of the other factors
  (`jaxmoe.sweeps.effective_size`), drawn in `effective_size.png` / `.pdf`.
- `rate_curves.png` / `.pdf`: one row of panels per metric; with two or more factors one column per level of
  the first factor, each panel one curve (mean per n) per combination of the others; with one factor one
  panel per metric, a curve per level.

A cell folder holding another config than its cell is refused (one line naming it), as is an unreadable
chunk in any cell (`report.load_results`). Reading takes no lock.
"""

from __future__ import annotations

import csv
import io
import os
from typing import NamedTuple

import numpy as np

from jaxmoe.validation import require
from jaxmoe.sweeps.effective_size import (effective_size_report, format_effective_size, plot_effective_size,
                                          varies_sigma)
from jaxmoe.sweeps.grid import CELL_DIR, GRID_FILE, GridConfig, cell_folder, read_grid_folder
from jaxmoe.sweeps.report import COLUMNS, format_summary, load_results, result_rows, summarize, write_parquet_or_note
from jaxmoe.sweeps.table import FRAMES, concat_columns, lead_columns, sweep_columns, to_frame
from jaxmoe.sweeps.store import atomic_write_bytes, atomic_write_json
from jaxmoe.sweeps.figures import save_figure

__all__ = ["GridResults", "load_grid_results", "grid_columns", "grid_results_csv", "summarize_grid", "plot_grid_curves",
           "write_grid_report", "format_grid_summary"]


class GridResults(NamedTuple):
    """A grid and, per cell in order, its `SweepResults` (None: no completed chunk yet)."""

    grid: GridConfig
    cells: list

    @property
    def complete(self) -> bool:
        return all(res is not None and res.complete for res in self.cells)


def load_grid_results(out: str, frame: str | None = None):
    """Read every cell of the grid folder `out` (`report.load_results` per cell folder) into a `GridResults`;
    with `frame="pandas"` (or `"arrow"`) the grid's tidy table instead, as a data frame (`grid_columns`)."""
    if frame is not None:
        require(frame in FRAMES, "frame", frame, f"must be one of {list(FRAMES)} (or None: the results)")
        return to_frame(grid_columns(load_grid_results(out)), frame)
    grid = read_grid_folder(out)
    cells = []
    for cell in grid.cells:
        folder = cell_folder(out, cell)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            cells.append(None)
            continue
        res = load_results(folder)
        require(res.config.hash == cell.config.hash, "DIR", os.path.join(CELL_DIR, cell.dirname), f"holds config "
                f"{res.config.hash}, not the grid's cell {cell.index} ({cell.config.hash}), in {out}: remove the "
                "cell folder, or --overwrite the grid")
        cells.append(res if len(res.sizes) else None)
    return GridResults(grid, cells)


def grid_results_csv(gres: GridResults) -> str:
    """The grid's tidy table as CSV text: `cell`, one column per factor, then `report.COLUMNS`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("cell", *gres.grid.factors, *COLUMNS))
    for cell, res in zip(gres.grid.cells, gres.cells):
        if res is None:
            continue
        lead = [cell.index, *gres.grid.columns(cell).values()]
        w.writerows(lead + row for row in result_rows(res))
    return buf.getvalue()


def grid_columns(gres: GridResults) -> dict:
    """The grid's tidy table as typed columns (`table.sweep_columns` of each started cell, led by `cell` and
    one column per factor), for `results.parquet` and data frames."""
    tables = [lead_columns({"cell": cell.index, **gres.grid.columns(cell)}, sweep_columns(res))
              for cell, res in zip(gres.grid.cells, gres.cells) if res is not None]
    require(len(tables) > 0, "grid", gres.grid.name, "has no cell with a completed chunk yet")
    return concat_columns(tables)


def _slope_rows(grid: GridConfig, records: list) -> list[dict]:
    rows = []
    for cell, record in zip(grid.cells, records):
        summary = record["summary"]
        if summary is None:
            continue
        for metric, s in summary["metrics"].items():
            rows.append({"cell": cell.index, **grid.columns(cell), "metric": metric, "slope": s["slope"],
                         "ci": s["ci"], "median_slope": s["median_slope"], "theory_slope": s["theory_slope"],
                         "converged_fraction": summary["fits"]["converged_fraction"],
                         "boundary_fraction": summary["fits"]["boundary_fraction"], "note": s["note"]})
    return rows


def summarize_grid(gres: GridResults, num_bootstrap: int = 1000, level: float = 0.95) -> dict:
    """The dict written to the grid's `summary.json` (see the module docstring)."""
    grid = gres.grid
    records = [{"cell": cell.index, "dir": os.path.relpath(cell_folder("", cell)), "values": cell.values,
                "columns": grid.columns(cell), "label": cell.label,
                "summary": None if res is None else summarize(res, num_bootstrap, level)}
               for cell, res in zip(grid.cells, gres.cells)]
    return {"grid": grid.name, "hash": grid.hash, "factors": list(grid.factors), "zip": [list(g) for g in grid.zip],
            "complete": gres.complete, "cells_total": len(grid.cells),
            "cells_started": sum(res is not None for res in gres.cells),
            "cells": records, "slopes": _slope_rows(grid, records), "num_bootstrap": num_bootstrap,
            "effective_sample_size": effective_size_report(gres, num_bootstrap, level) if varies_sigma(grid) else None}


def _facets(grid: GridConfig) -> list[tuple[str, list[int]]]:
    """(title, cell indices) per column of the figure: one per level of the first factor when there are two
    or more factors, else one column with every cell."""
    if len(grid.factors) < 2:
        return [("", [c.index for c in grid.cells])]
    first = next(iter(grid.factors))
    out: dict = {}
    for cell in grid.cells:
        title = f"{first}={grid.columns(cell)[first]}"
        out.setdefault(title, []).append(cell.index)
    return list(out.items())


def _curve_label(grid: GridConfig, index: int, faceted: bool) -> str:
    columns = grid.columns(grid.cells[index])
    if faceted:
        columns = dict(list(columns.items())[1:])
    return ", ".join(f"{k}={v}" for k, v in columns.items())


def plot_grid_curves(gres: GridResults, summary: dict, stem: str) -> list[str]:
    """`stem.png` and `stem.pdf` (see the module docstring; needs matplotlib, the `plot` extra)."""
    from matplotlib.figure import Figure  # optional dependency: see report.plot_curves

    started = [(i, res) for i, res in enumerate(gres.cells) if res is not None]
    metrics = list(dict.fromkeys(name for _, res in started for name in res.metrics))
    facets = _facets(gres.grid)
    fig = Figure(figsize=(4.3 * len(facets), 3.3 * max(1, len(metrics))))
    axes = fig.subplots(max(1, len(metrics)), len(facets), squeeze=False, sharey="row")  # facets compared by eye
    for col, (title, indices) in enumerate(facets):
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for j, index in enumerate(indices):
                record = summary["cells"][index]["summary"]
                if record is None or metric not in record["metrics"]:
                    continue
                mean = [np.nan if v is None else v for v in record["metrics"][metric]["mean"]]
                slope = record["metrics"][metric]["slope"]
                label = _curve_label(gres.grid, index, len(facets) > 1)
                label += "" if slope is None else f" (slope {slope:.2f})"
                ax.loglog(record["sizes"], mean, "o-", color=f"C{j % 10}", ms=3, lw=1, label=label)
            ax.set_title(f"{metric}" + (f"\n{title}" if title else ""), fontsize=9)
            ax.set_xlabel("n")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, loc="lower left")
    state = "" if summary["complete"] else f" (partial: {summary['cells_started']} of {summary['cells_total']} cells)"
    fig.suptitle(f"{summary['grid']}: {summary['cells_total']} cells, mean over replicates per n{state}", fontsize=10)
    return save_figure(fig, stem, dpi=110)


def write_grid_report(out: str, num_bootstrap: int = 1000, level: float = 0.95, plots: bool = True) -> dict:
    """Write the grid's `results.csv`, `summary.json` and plots into `out`; returns the summary."""
    gres = load_grid_results(out)
    require(any(res is not None for res in gres.cells), "DIR", out, "has no cell with a completed chunk yet: "
            "nothing to report")
    summary = summarize_grid(gres, num_bootstrap, level)
    text = grid_results_csv(gres)
    atomic_write_bytes(os.path.join(out, "results.csv"), lambda fh: fh.write(text.encode()))
    files = [GRID_FILE, "results.csv", *write_parquet_or_note(os.path.join(out, "results.parquet"),
                                                              grid_columns(gres), summary), "summary.json"]
    if plots:
        try:
            files += [os.path.basename(p) for p in plot_grid_curves(gres, summary, os.path.join(out, "rate_curves"))]
            if summary["effective_sample_size"] is not None and any(g["metrics"] for g in
                                                                    summary["effective_sample_size"]["groups"]):
                files += [os.path.basename(p) for p in plot_effective_size(
                    gres, summary["effective_sample_size"], os.path.join(out, "effective_size"))]
        except ImportError:
            summary["plots_note"] = "matplotlib is not installed (pip install 'jaxmoe[plot]'): no plots"
    summary["files"] = files
    atomic_write_json(os.path.join(out, "summary.json"), summary)
    return summary


def format_grid_summary(summary: dict) -> str:
    """The grid's summary as text: a header, then per cell its label and its sweep's summary, indented."""
    state = "" if summary["complete"] else f"  [partial: {summary['cells_started']} of {summary['cells_total']} " \
                                           "cells started]"
    lines = [f"grid {summary['grid']}: {summary['cells_total']} cells over {', '.join(summary['factors'])}{state}"]
    for record in summary["cells"]:
        lines.append(f"cell {record['cell']} ({record['label']}):")
        body = "(not started)" if record["summary"] is None else format_summary(record["summary"])
        lines.extend("  " + line for line in body.splitlines())
    if summary.get("effective_sample_size"):
        lines.append(format_effective_size(summary["effective_sample_size"]))
    return "\n".join(lines)

