"""Multi-factor sweeps (`jaxmoe.sweeps.grid`): cells crossed and zipped in the order written, a cell equal to the
sweep of its own file (hash and fits, bit for bit), every bad grid one line naming the field and the cell, the
grid folder's rules, its report (a `cell` column and one column per factor) and a SIGKILL-ed grid resumed.

Folder and report tests use fake chunks (`sweep_fakes`: no compile); a grid cell equal, bit for bit, to its
separate sweep with real fits is tests/cli_sweep_test.py's (it reuses that module's compiled programs)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import jaxmoe
from jaxmoe import JaxMoEInputError
from jaxmoe.cli import main
from jaxmoe.sweeps import grid_from_dict, runner
from jaxmoe.sweeps.grid import cell_folder
from sweep_fakes import fake_run_chunk

BASE = {"preset": "softmax-ridge", "sweep": {"sizes": [100, 200, 400], "replicates": 2}}
SIGMAS = [0.1, 0.03, 0.01]


def _grid(**factors):
    return {**BASE, "grid": factors}


def _six():
    return _grid(**{"data.sigma": SIGMAS, "model.k_fit": [3, 4]})


def test_cells_cross_in_the_order_written_and_zip_pairs():
    grid = grid_from_dict(_six())
    assert [c.values for c in grid.cells] == [{"data.sigma": s, "model.k_fit": k} for s in SIGMAS for k in (3, 4)]
    assert [c.config.spec["data"]["sigma"] for c in grid.cells] == [s for s in SIGMAS for _ in (3, 4)]
    assert [c.config.spec["model"]["k_fit"] for c in grid.cells] == [3, 4] * 3
    nested = grid_from_dict({**BASE, "grid": {"data": {"sigma": SIGMAS}, "model": {"k_fit": [3, 4]}}})
    assert nested.hash == grid.hash  # quoted and nested TOML keys are one path
    sizes = [[100, 200], [200, 400], [400, 800]]
    zipped = grid_from_dict(_grid(**{"data.sigma": SIGMAS, "sweep.sizes": sizes, "model.k_fit": [3, 4],
                                     "zip": [["data.sigma", "sweep.sizes"]]}))
    assert len(zipped.cells) == 6
    assert [(c.values["data.sigma"], c.config.sizes) for c in zipped.cells[::2]] == \
        [(s, tuple(n)) for s, n in zip(SIGMAS, sizes)]
    assert zipped.columns(zipped.cells[2]) == {"data.sigma": 0.03, "sweep.sizes": 1, "model.k_fit": 3}


def test_zipped_members_may_repeat_a_level_when_the_tuples_differ():
    """Variants as a zip group (Table 1's configs): sigma repeats across the over-fitted cells and k_fit across
    the noise levels, but every (sigma, k_fit, restarts) tuple is a cell of its own."""
    grid = grid_from_dict(_grid(**{"data.sigma": [0.1, 0.01, 0.1], "model.k_fit": [3, 3, 2],
                                   "solver.restarts": [4, 4, 1],
                                   "zip": [["data.sigma", "model.k_fit", "solver.restarts"]]}))
    assert [(c.config.spec["data"]["sigma"], c.config.spec["model"]["k_fit"], c.config.spec["solver"]["restarts"])
            for c in grid.cells] == [(0.1, 3, 4), (0.01, 3, 4), (0.1, 2, 1)]


def test_a_cell_is_the_sweep_of_its_own_file():
    grid = grid_from_dict(_six())
    alone = jaxmoe.preset_config("softmax-ridge").replace(sizes=BASE["sweep"]["sizes"], replicates=2)
    for cell in grid.cells:
        assert cell.config.hash == alone.replace(sigma=cell.values["data.sigma"], k_fit=cell.values["model.k_fit"]).hash
    # a whole truth per cell (the preset's truth, then the same with the first gate's slope changed)
    written = jaxmoe.sweeps.setting_to_dict(jaxmoe.get_preset("softmax-ridge"))
    other = json.loads(json.dumps(written["truth"]))
    other["beta1"][0][0] = 3.0
    base = {k: written[k] for k in ("model", "data")}
    grid = grid_from_dict({**base, "sweep": {"sizes": [100, 200]}, "grid": {"truth": [written["truth"], other]}})
    assert grid.cells[1].config.hash == jaxmoe.sweeps.config_from_dict({**base, "truth": other,
                                                                         "sweep": {"sizes": [100, 200]}}).hash
    assert grid.columns(grid.cells[1]) == {"truth": 1}


@pytest.mark.parametrize("factors, message", [
    ({"data.sigmaa": [0.1]}, "grid.data.sigmaa=[0.1]: unknown field; data allows ['sigma', 'inputs']"),
    ({"data.sigma": []}, "grid.data.sigma=[]: must be a non-empty list of levels"),
    ({"data.sigma": 0.1}, "grid.data.sigma=0.1: must be a non-empty list of levels"),
    ({"data.sigma": [0.1, -1.0]}, "grid[cell 1: data.sigma=-1.0] data.sigma=-1.0: must be a finite number >= 0"),
    ({"engine.lanes": [2]}, "grid.engine.lanes=[2]: is speed only"),
    ({"data.sigma": [0.1, 0.1]}, "grid.data.sigma=0.1: repeats a level"),
    ({"data.sigma": [0.1, 0.1], "model.k_fit": [3, 3], "zip": [["data.sigma", "model.k_fit"]]},
     "grid.zip ['data.sigma', 'model.k_fit']=[0.1, 3]: repeats a level"),
    ({"data.sigma": [0.1, 0.2], "sweep.sizes": [[100, 200]], "zip": [["data.sigma", "sweep.sizes"]]},
     "grid.zip=['data.sigma', 'sweep.sizes']: zipped factors must have as many levels each"),
    ({"data.sigma": [0.1], "zip": [["data.sigma", "model.k_fit"]]}, "grid.zip='model.k_fit': is not a factor"),
    ({"model.k_fit": [3, 1]}, "grid[cell 1: model.k_fit=1] model.k_fit=1: must be >= k_star = 2"),
    ({"preset": ["softmax-ridge", "nope"]}, "grid[cell 1: preset=\"nope\"] preset='nope': must be one of"),
    ({}, "grid={}: needs at least one factor"),
    ({"solver.options.max_iter": [10, 0]}, "grid[cell 1: solver.options.max_iter=0] solver.options.max_iter=0:"),
])
def test_bad_grids_are_one_line_naming_the_field_and_the_cell(factors, message):
    with pytest.raises(JaxMoEInputError) as err:
        grid_from_dict(_grid(**factors))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_two_cells_that_are_the_same_sweep_are_refused():
    with pytest.raises(JaxMoEInputError, match=r"grid='cells 0 and 1': are the same sweep"):
        grid_from_dict(_grid(**{"data.inputs": ["uniform", {"law": "uniform", "low": -1.0}]}))  # one law, twice


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(runner, "run_chunk", fake_run_chunk)


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_grid_folder_report_and_rules(tmp_path, fake):
    out = str(tmp_path / "grid")
    result = jaxmoe.run_sweep(_six(), out)  # run_sweep of a grid is run_grid
    assert len(result.computed) == 6 * 3 and result.reused == []
    rows = _rows(os.path.join(out, "results.csv"))
    assert list(rows[0])[:3] == ["cell", "data.sigma", "model.k_fit"] and len(rows) == 6 * 3 * 2 * 1
    for cell in grid_from_dict(_six()).cells:  # each cell's rows are its own folder's results.csv, led by its levels
        own = _rows(os.path.join(cell_folder(out, cell), "results.csv"))
        mine = [r for r in rows if r["cell"] == str(cell.index)]
        assert [{k: r[k] for k in own[0]} for r in mine] == own
        assert {(r["data.sigma"], r["model.k_fit"]) for r in mine} == \
            {(str(cell.values["data.sigma"]), str(cell.values["model.k_fit"]))}
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["complete"] and summary["cells_total"] == 6
    assert [r["summary"]["k_fit"] for r in summary["cells"]] == [3, 4] * 3
    slope = next(r for r in summary["slopes"] if r["cell"] == 5 and r["metric"] == "l2_error")
    assert slope["slope"] == pytest.approx(-0.5) and slope["data.sigma"] == 0.01 and slope["model.k_fit"] == 4
    assert {"rate_curves.png", "rate_curves.pdf"} <= set(os.listdir(out))
    # folder rules: the same grid needs --resume (then reuses every chunk), another grid is refused
    with pytest.raises(JaxMoEInputError, match="already holds this grid .6 of 6 cells reported.: pass --resume"):
        jaxmoe.run_sweep(_six(), out)
    again = jaxmoe.run_sweep(_six(), out, resume=True)
    assert again.computed == [] and len(again.reused) == 18
    with pytest.raises(JaxMoEInputError, match="holds another grid"):
        jaxmoe.run_sweep(_grid(**{"data.sigma": [0.2]}), out, resume=True)
    with pytest.raises(JaxMoEInputError, match=r"is a grid folder \(grid.json\): read it with jaxmoe.sweeps.load_grid_results"):
        jaxmoe.write_report(out)
    smaller = grid_from_dict(_grid(**{"data.sigma": [0.2]}))
    assert len(jaxmoe.run_sweep(smaller, out, overwrite=True).computed) == 3
    assert sorted(os.listdir(os.path.join(out, "cells"))) == ["cell-000"]
    cell = cell_folder(out, smaller.cells[0])
    with pytest.raises(JaxMoEInputError, match="has .'config.json'.* but no grid.json"):
        jaxmoe.run_sweep(_six(), cell)
    assert jaxmoe.write_report(cell)["k_fit"] == 3  # a cell folder is a sweep folder


def test_a_cell_folder_of_another_config_is_refused_by_the_report(tmp_path, fake):
    out = str(tmp_path / "grid")
    grid = grid_from_dict(_grid(**{"data.sigma": [0.1, 0.03]}))
    jaxmoe.run_sweep(grid, out)
    swapped = cell_folder(out, grid.cells[0])
    os.rename(swapped, swapped + ".x")
    os.rename(cell_folder(out, grid.cells[1]), swapped)
    with pytest.raises(JaxMoEInputError, match=r"DIR='cells/cell-000': holds config \w+, not the grid's cell 0"):
        jaxmoe.sweeps.write_grid_report(out)


KILLED = """
import sys, time
sys.path.insert(0, {tests!r})
from sweep_fakes import fake_run_chunk
from jaxmoe.sweeps import runner
def slow(*args, **kwargs):
    time.sleep(0.2)
    return fake_run_chunk(*args, **kwargs)
runner.run_chunk = slow
runner.run_sweep({raw!r}, {out!r})
"""


def test_killed_grid_resumes_to_the_uninterrupted_results(tmp_path, fake):
    raw, out = _six(), str(tmp_path / "killed")
    code = KILLED.format(tests=os.path.dirname(__file__), raw=raw, out=out)
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            stderr=subprocess.PIPE)
    second = os.path.join(out, "cells", "cell-001", "chunks")
    deadline = time.time() + 120
    while not (os.path.isdir(second) and any(f.endswith(".npz") for f in os.listdir(second))):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, "summary.json"))
    lines = []
    resumed = jaxmoe.run_sweep(raw, out, resume=True, log=lines.append)
    assert any("taking over the lock" in line for line in lines)
    assert len(resumed.reused) >= 4 and len(resumed.computed) + len(resumed.reused) == 18
    whole = str(tmp_path / "whole")
    jaxmoe.run_sweep(raw, whole)
    assert _rows(os.path.join(out, "results.csv")) == _rows(os.path.join(whole, "results.csv"))


def _toml(tmp_path, grid_lines: str) -> str:
    path = tmp_path / "grid.toml"
    path.write_text('preset = "softmax-ridge"\n[sweep]\nsizes = [100, 200, 400]\nreplicates = 2\n[grid]\n' + grid_lines)
    return str(path)


def test_cli_dry_run_lists_the_cells_and_bad_grids_exit_2(tmp_path, capsys):
    toml = _toml(tmp_path, '"data.sigma" = [0.1, 0.03, 0.01]\nmodel.k_fit = [3, 4]\n')
    assert main(["sweep", toml, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "6 cells over data.sigma, model.k_fit" in text and "cell 5: data.sigma=0.01, model.k_fit=4; 3 chunks, 6 fits" in text
    assert main(["sweep", toml, "--dry-run", "--json", "--replicates", "3"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["values"] for c in listed["cells"]][1] == {"data.sigma": 0.1, "model.k_fit": 4}
    assert listed["cells"][0]["chunks"][0]["fits"] == 3 and listed["hash"] == jaxmoe.load_sweep(toml).replace(replicates=3).hash
    for argv, start in [(["--sigma", "0.2"], "jaxmoe: error: --sigma=0.2: data.sigma is a factor of the grid"),
                        (["--k-fit", "5"], "jaxmoe: error: --k-fit=5: model.k_fit is a factor of the grid")]:
        assert main(["sweep", toml, "--dry-run", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1
    bad = _toml(tmp_path, '"data.sigma" = [0.1, -0.5]\n')
    assert main(["sweep", bad, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxmoe: error: grid[cell 1: data.sigma=-0.5] data.sigma=-0.5:") and err.count("\n") == 1
    assert main(["bound", toml]) == 2
    assert "has a [grid] (several sweeps, one per cell)" in capsys.readouterr().err


def test_cli_grid_sweep_and_report(tmp_path, capsys, fake):
    toml, out = _toml(tmp_path, '"data.sigma" = [0.1, 0.03]\n'), str(tmp_path / "out")
    assert main(["sweep", toml, "--out", out, "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("grid grid: 2 cells over data.sigma") and "cell 1 (data.sigma=0.03):" in text
    assert "(6 chunks computed, 0 reused" in text
    assert main(["report", out, "--json", "--bootstrap", "50"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cells_started"] == 2 and summary["slopes"][1]["data.sigma"] == 0.03
