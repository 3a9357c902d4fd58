r"""The tidy results table as typed columns: `results.parquet` next to `results.csv`, and data frames.

A sweep's table has one row per (n, replicate, metric), in that order, as `results.csv`; a grid's table
leads with `cell` and one column per factor (`grid_report`). The Parquet schema (Arrow types):

| column | type | what |
|---|---|---|
| `cell` (grids) | int64 | the cell's index (`grid.json`) |
| one per factor (grids), named by its path | the levels' type (double, int64, string, bool) | the cell's level; a table or list level (a whole truth, per-cell sizes) as int64, its position in the factor's list |
| `setting` | string | the config's name |
| `n`, `replicate` | int64 | sample size, replicate index |
| `metric` | string | `l2_error`, the family's Voronoi loss, `exact_error`, `overfit_error`, ... |
| `value` | double | the metric (NaN where it is not finite: failed fits are rows like the others) |
| `status` | string | the solver's status (`jaxmoe.estimation.STATUS_NAMES`) |
| `converged` | bool | a stopping rule held with finite values |
| `iterations` | int64 | solver iterations |
| `objective`, `objective_truth` | double | least-squares objective at the fit and at the truth |
| `objective_reference` | double, null without `solver.reference` | objective of the long refinement from the truth |
| `reached_minimum` | bool, null without `solver.reference` | the fit reached the reference objective |
| `empty_cells` | int64 | empty Voronoi cells of the fit |
| `on_boundary` | bool | a free parameter within 1e-6 (relative to the box's width) of a face of Theta (`MoEFamily.on_boundary`) |

Writing needs pyarrow (the `parquet` extra, `pip install 'jaxmoe[parquet]'`; without it a report writes the
CSV alone and says so); a pandas frame needs pandas too. Arrow is the format every data-frame library
reads (pandas, polars, DuckDB, R's arrow), which is why it is the one written.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from jaxmoe.validation import require
from jaxmoe.estimation.status import STATUS_NAMES
from jaxmoe.sweeps.store import atomic_write_bytes

__all__ = ["FRAMES", "sweep_columns", "lead_columns", "concat_columns", "to_arrow", "to_frame", "write_parquet"]

FRAMES = ("pandas", "arrow")
INSTALL = "pip install 'jaxmoe[parquet]'"


def sweep_columns(res) -> dict[str, Any]:
    """A sweep's tidy table (a `report.SweepResults`) as columns: name -> NumPy array (object arrays with
    None for nulls), rows by n, replicate, metric."""
    names = list(res.metrics)
    sizes, r, m = len(res.sizes), res.config.replicates, len(names)
    i, rep, k = (a.ravel() for a in np.meshgrid(np.arange(sizes), np.arange(r), np.arange(m), indexing="ij"))
    f = res.fits
    values = np.stack([res.metrics[name] for name in names], axis=-1) if names else np.zeros((sizes, r, 0))
    reference = res.config.spec["solver"]["reference"]

    def per_fit(a):
        return np.asarray(a)[i, rep]

    def nullable(a):
        return per_fit(a).astype(object) if reference else np.full(i.size, None, dtype=object)

    return {"setting": np.full(i.size, res.config.name, dtype=object), "n": np.asarray(res.sizes, np.int64)[i],
            "replicate": rep.astype(np.int64), "metric": np.asarray(names, dtype=object)[k] if m else
            np.zeros(0, dtype=object), "value": values[i, rep, k].astype(np.float64),
            "status": np.asarray([STATUS_NAMES[int(s)] for s in per_fit(f["status"])], dtype=object),
            "converged": per_fit(f["converged"]).astype(bool), "iterations": per_fit(f["iterations"]).astype(np.int64),
            "objective": per_fit(f["objective"]).astype(np.float64),
            "objective_truth": per_fit(f["objective_truth"]).astype(np.float64),
            "objective_reference": nullable(np.asarray(f["objective_reference"], np.float64)),
            "reached_minimum": nullable(np.asarray(f["reached_minimum"], bool)),
            "empty_cells": per_fit(f["empty_cells"]).astype(np.int64),
            "on_boundary": per_fit(f["on_boundary"]).astype(bool)}


def lead_columns(lead: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    """`columns` with constant columns `lead` (name -> one value, repeated for every row) put first."""
    rows = len(next(iter(columns.values())))
    return {**{name: np.full(rows, value, dtype=object) for name, value in lead.items()}, **columns}


def concat_columns(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """Tables with the same columns, one after the other."""
    require(len(tables) > 0, "tables", tables, "needs at least one table")
    return {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}


def _arrow():
    try:
        import pyarrow  # an optional dependency (the `parquet` extra)
    except ImportError as err:
        raise ImportError(f"results.parquet and data frames need pyarrow: {INSTALL}") from err
    return pyarrow


def to_arrow(columns: dict[str, Any]):
    """The table as a `pyarrow.Table` (object columns: types inferred, None as null)."""
    pa = _arrow()
    arrays = {}
    for name, values in columns.items():
        values = np.asarray(values)
        arrays[name] = pa.array(values.tolist()) if values.dtype == object else pa.array(values)
    return pa.table(arrays)


def to_frame(columns: dict[str, Any], frame: str = "pandas"):
    """The table as a data frame: `frame="pandas"` (a `pandas.DataFrame`) or `"arrow"` (a `pyarrow.Table`)."""
    require(frame in FRAMES, "frame", frame, f"must be one of {list(FRAMES)}")
    table = to_arrow(columns)
    if frame == "arrow":
        return table
    try:
        import pandas  # noqa: F401 - to_pandas needs it
    except ImportError as err:
        raise ImportError(f"a pandas frame needs pandas: {INSTALL}, or frame='arrow'") from err
    return table.to_pandas()


def write_parquet(path: str, columns: dict[str, Any]) -> None:
    """`columns` as a Parquet file, atomically (`store.atomic_write_bytes`)."""
    table = to_arrow(columns)  # first: a missing pyarrow is said in one line with the install command
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, lambda fh: fh.write(buf.getvalue()))
