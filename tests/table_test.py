"""results.parquet and data frames (`jaxmoe.sweeps.table`): the same rows and values as results.csv, the
documented Arrow types, nulls where a column does not apply, grids led by cell and factor columns, and a
report without pyarrow that writes the CSV and says why there is no Parquet file. Fake chunks: no compile."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jaxmoe
from jaxmoe import JaxMoEInputError
from jaxmoe.sweeps import load_grid_results, runner, table
from sweep_fakes import fake_run_chunk

TYPES = {"setting": pa.string(), "n": pa.int64(), "replicate": pa.int64(), "metric": pa.string(),
         "value": pa.float64(), "status": pa.string(), "converged": pa.bool_(), "iterations": pa.int64(),
         "objective": pa.float64(), "objective_truth": pa.float64(), "empty_cells": pa.int64()}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)


def _raw(reference: bool) -> dict:
    return {"preset": "softmax-ridge", "sweep": {"sizes": [100, 200, 400], "replicates": 2},
            "solver": {"reference": reference}}


@pytest.mark.parametrize("reference", [False, True])
def test_parquet_has_the_csv_rows_and_the_documented_types(tmp_path, fake, reference):
    out = str(tmp_path / "out")
    summary = jaxmoe.run_sweep(_raw(reference), out, num_bootstrap=20).summary
    assert "results.parquet" in summary["files"] and "parquet_note" not in summary
    got = pq.read_table(os.path.join(out, "results.parquet"))
    assert got.column_names == list(jaxmoe.sweeps.report.COLUMNS)
    for name, kind in TYPES.items():
        assert got.schema.field(name).type == kind, name
    csv = pd.read_csv(os.path.join(out, "results.csv"))
    frame = jaxmoe.load_results(out, frame="pandas")
    assert len(frame) == len(csv) == 3 * 2 * 1
    for name in TYPES:
        np.testing.assert_array_equal(frame[name].to_numpy(), csv[name].to_numpy(), err_msg=name)
    nulls = got.column("objective_reference").null_count, got.column("reached_minimum").null_count
    assert nulls == ((0, 0) if reference else (6, 6))
    if reference:
        np.testing.assert_array_equal(frame["objective_reference"], csv["objective_reference"])
    assert jaxmoe.load_results(out, frame="arrow").equals(got)


def test_grid_parquet_leads_with_cell_and_factor_columns(tmp_path, fake):
    out = str(tmp_path / "grid")
    raw = {**_raw(False), "grid": {"data.sigma": [0.1, 0.03], "model.k_fit": [3, 4], "sweep.sizes": [[100, 200],
                                                                                                      [200, 400]],
                                   "zip": [["data.sigma", "sweep.sizes"]]}}
    jaxmoe.run_sweep(raw, out, num_bootstrap=20)
    got = pq.read_table(os.path.join(out, "results.parquet"))
    assert got.column_names[:4] == ["cell", "data.sigma", "model.k_fit", "sweep.sizes"]
    assert [got.schema.field(n).type for n in got.column_names[:4]] == [pa.int64(), pa.float64(), pa.int64(), pa.int64()]
    frame = load_grid_results(out, frame="pandas")
    csv = pd.read_csv(os.path.join(out, "results.csv"))
    assert len(frame) == len(csv) == 4 * 2 * 2
    for name in ["cell", "data.sigma", "model.k_fit", "sweep.sizes", "n", "value"]:
        np.testing.assert_array_equal(frame[name].to_numpy(), csv[name].to_numpy(), err_msg=name)
    assert sorted(set(zip(frame["sweep.sizes"], frame["n"]))) == [(0, 100), (0, 200), (1, 200), (1, 400)]


def test_without_pyarrow_the_report_writes_the_csv_and_says_so(tmp_path, fake, monkeypatch):
    def missing():
        raise ImportError(f"results.parquet and data frames need pyarrow: {table.INSTALL}")

    monkeypatch.setattr(table, "_arrow", missing)
    out = str(tmp_path / "out")
    summary = jaxmoe.run_sweep(_raw(False), out, num_bootstrap=20).summary
    assert "results.parquet" not in os.listdir(out) and "results.csv" in summary["files"]
    assert summary["parquet_note"] == "results.parquet and data frames need pyarrow: pip install 'jaxmoe[parquet]'"
    with pytest.raises(ImportError, match=r"pip install 'jaxmoe\[parquet\]'"):
        jaxmoe.load_results(out, frame="pandas")


def test_bad_frame_is_one_line(tmp_path, fake):
    out = str(tmp_path / "out")
    jaxmoe.run_sweep(_raw(False), out, report=False)
    with pytest.raises(JaxMoEInputError, match=r"^frame='polars': must be one of \['pandas', 'arrow'\]"):
        jaxmoe.load_results(out, frame="polars")
