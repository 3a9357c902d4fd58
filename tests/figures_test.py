"""`save_figure`: one draw per file after the layout, the same bytes as matplotlib's own two-draw save."""

import io

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

from jaxmoe.sweeps.figures import save_figure  # noqa: E402


def _figure():
    fig = Figure(figsize=(6, 3))
    for ax, p in zip(fig.subplots(1, 2), (-0.5, -0.25)):
        n = np.geomspace(100, 1e5, 7)
        ax.loglog(n, n ** p, "o-", label=f"slope {p}")
        ax.set_title("a title\nwith a second line")
        ax.legend(loc="best")
    return fig


def test_each_file_is_drawn_once_with_the_bytes_of_a_plain_save(tmp_path, monkeypatch):
    plain = _figure()
    plain.tight_layout()  # leaves a placeholder layout engine: savefig then draws twice per file
    expected = {}
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        plain.savefig(buf, format=fmt, dpi=100, metadata={"CreationDate": None} if fmt == "pdf" else None)
        expected[fmt] = buf.getvalue()
    fig = _figure()
    draws = []
    original = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: (draws.append(1), original(self, renderer))[1])
    paths = save_figure(fig, str(tmp_path / "curves"), dpi=100, pdf_metadata={"CreationDate": None})
    assert paths == [str(tmp_path / "curves.png"), str(tmp_path / "curves.pdf")]
    assert len(draws) == 2  # one per file (4 with the placeholder engine left on)
    for path, fmt in zip(paths, ("png", "pdf")):
        assert open(path, "rb").read() == expected[fmt], fmt
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_a_constrained_layout_is_kept_and_run(tmp_path):
    fig = Figure(figsize=(4, 3), layout="constrained")
    fig.subplots().plot([1, 2], [3, 4])
    save_figure(fig, str(tmp_path / "c"), dpi=50, tight=False)
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "c.pdf").stat().st_size > 0
