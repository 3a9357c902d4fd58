"""Every notebook under notebooks/ executes top to bottom without error (nbclient, fresh kernel), at reduced
size (JAXMOE_NOTEBOOK_SMALL=1, read by the notebooks), and prints what it is there to show."""

import pathlib
import time

import pytest

import nbclient  # noqa: E402  (test extra: a missing install must fail, not skip)
import nbformat  # noqa: E402

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

EXPECTED = {
    "identifiability.ipynb": ["verdict: dependent", "holds", "fails"],
    # 3 sizes x 3 replicates; the four metrics of an over-fitted softmax curve; the folder; a refused config
    "quickstart.ipynb": ["softmax-ridge: 9 fits (3 sizes x 3 replicates)", "voronoi_d1", "overfit_error",
                         "'results.csv'", "'rate_curves.pdf'", "preferred law", "refused: model.k_fit=1"],
    "hierarchical.ipynb": ["sigmoid  verdict: independent", "linear   verdict: dependent",
                           "hierarchical-ridge: 9 fits (3 sizes x 3 replicates), k* = 2, k = 2",
                           "level1_error", "voronoi_hierarchical", "L2 error"],
    # the ridge row resolvable and linear in eps, the linear row at the floor: the two verdicts
    "lower_bounds.ipynb": ["ridge (D1)           resolvable ", "softmax-linear  verdict: not_identifiable",
                           "softmax-ridge   verdict: "],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMOE_NOTEBOOK_SMALL", "1")  # the kernel inherits the environment
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for needle in EXPECTED.get(path.name, []):
        assert needle in outputs, needle
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert path.name == "identifiability.ipynb" or images >= 2
    assert seconds < 180


def test_notebooks_found():
    assert {p.name for p in NOTEBOOKS} >= set(EXPECTED)
