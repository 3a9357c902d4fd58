r"""The figure of a lower-bound study: the inverse-bound profile $\omega(\varepsilon)$ (one curve per r, the
float64 floor, the theory's slope $\omega \propto \varepsilon^{m}$) and the two-point curve $LB(n)$ with its
maximiser $\varepsilon_n$ (and the theory's $\varepsilon_n \propto n^{-1/(2m)}$). Needs matplotlib (the `plot`
extra); written atomically as PNG and PDF.
"""

from __future__ import annotations

import numpy as np

from jaxmoe.sweeps.figures import save_figure
from jaxmoe.validation import require

__all__ = ["plot_bound"]


def _theory_line(ax, x, y, slope, label):
    """A dashed line of `slope` (log-log) through the middle finite point of (x, y): drawn even when no slope
    could be fitted, so a reader sees what the theory says."""
    ok = np.flatnonzero(np.isfinite(y) & (y > 0))
    if ok.size == 0:
        return
    mid = ok[ok.size // 2]
    ax.loglog(x[ok], y[mid] * (x[ok] / x[mid]) ** slope, "k--", alpha=0.5, lw=1, label=label)


def _profile_panel(ax, profiles: dict, m_theory: float) -> None:
    for r, prof in profiles.items():
        label = "omega" if r is None else f"omega, r = {r:g}"
        shown = np.where(prof.resolvable, prof.omega, np.nan)
        line, = ax.loglog(prof.eps, shown, "o-", ms=3, label=label + (f" (m = {prof.exponent:.2f})"
                                                                    if prof.exponent is not None else ""))
        rest = np.isfinite(prof.omega) & ~prof.resolvable & (prof.omega > 0)
        if rest.any():  # below 100 floors: drawn, hollow, never fitted
            ax.loglog(prof.eps[rest], prof.omega[rest], "o", ms=3, mfc="none", color=line.get_color())
    first = next(iter(profiles.values()))
    ax.loglog(first.eps, 100 * first.floor, ":", color="grey", label="100 x float64 floor")
    _theory_line(ax, first.eps, np.where(first.resolvable, first.omega, np.nan), m_theory, f"theory: eps^{m_theory:g}")
    missing = int(sum(np.sum(~np.isfinite(p.omega)) for p in profiles.values()))
    ax.set_title("inverse bound" + (f" ({missing} eps without a feasible point)" if missing else ""), fontsize=9)
    ax.set_xlabel("loss D(G, G*) >= eps")
    ax.set_ylabel("omega(eps) = min ||f_G - f*||")
    ax.legend(fontsize=6, loc="upper left")


def _two_point_panel(ax, curves: dict, m_theory: float) -> None:
    for r, curve in curves.items():
        suffix = "" if r is None else f", r = {r:g}"
        ax.loglog(curve.n, curve.lower_bound, "-", label="LB(n)" + suffix)
        ax.loglog(curve.n, curve.eps_n, "--", label="eps_n" + suffix)
    if curves:
        first = next(iter(curves.values()))
        _theory_line(ax, first.n, first.eps_n, -1.0 / (2 * m_theory), f"theory: n^-1/{2 * m_theory:g}")
    else:
        ax.text(0.5, 0.5, "no resolvable eps: no two-point curve", transform=ax.transAxes, ha="center", fontsize=8)
    ax.set_title("two-point lower bound", fontsize=9)
    ax.set_xlabel("sample size n")
    ax.set_ylabel("LB(n), eps_n")
    if curves:
        ax.legend(fontsize=6, loc="lower left")


def plot_bound(profiles: dict, curves: dict, stem: str, m_theory: float = 1.0, title: str = "") -> list[str]:
    """`stem.png` and `stem.pdf`: omega(eps) per r (left) and LB(n), eps_n per r (right). `profiles`,
    `curves`: {r: InverseBoundProfile}, {r: TwoPointCurve} (r None for a loss without r; a profile without a
    resolvable eps has no curve). Returns the paths written."""
    require(isinstance(profiles, dict) and len(profiles) > 0, "profiles", type(profiles).__name__,
            "must be a non-empty {r: profile} dict")
    from matplotlib.figure import Figure  # optional dependency; a bare Figure leaves the caller's backend alone

    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    _profile_panel(left, profiles, m_theory)
    _two_point_panel(right, curves, m_theory)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, stem, dpi=120)
