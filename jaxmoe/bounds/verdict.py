r"""The lower-bound verdict of a row from its inverse-bound profiles (one per r of a power-r loss, or one).

Rule (issue 14, item 5, with two additions; the README's "Verdict rules, in one place" lists it with every other
verdict rule of jaxmoe), on the local exponents $m_r$ (`local_exponent`: slope of $\log\omega$ on
$\log\varepsilon$ over the smallest resolvable decade, at least 8 points; resolvable: `profile.resolvable`):

1. `not_identifiable` if an exact symmetry of $f$ moves the loss (`profile.not_identifiable`, named), **or** if
   $\omega$ is at the float64 floor at some $\varepsilon$ in the top decade of the grid: a $G$ with
   $f_G = f^*$ to round-off and $D \ge \varepsilon$ (the first addition: softmax-linear's coincident-gate atoms,
   `experiments/lower_bound.md`; a smooth decay from the top of the grid cannot reach the floor, 1e-14, within
   one decade unless $m \ge 8$ there);
2. `polynomial` if $|m_r - m_{\text{theory},r}| \le 0.1$ for every r given (one $m_{\text{theory}}$ for all r, or
   one per r), **and** the two-point rate agrees with the exponent it was fitted on, $|\text{rate} + 1/(2m)|
   \le 0.05$ (the second addition: a power law gives exactly $-1/(2m)$; an envelope that is flat in steps,
   as near the float64 floor where the optimiser returns one measure for several $\varepsilon$, pins
   $\varepsilon_n$ and gives a rate near 0 at any fitted m: `inconclusive`, naming both numbers);
3. `slower_than_polynomial` if $m_r \ge 1.3$ for every r and $m_1$ rises by $\ge 0.5$ from the largest
   resolvable decade to the smallest;
4. otherwise `inconclusive` (also when some $m_r$ cannot be fitted: too few resolvable points).

**Robust to the run** (a third addition): a profile pooled from several runs of its r (`pool_profiles`: other
eps grids, starts, optimisers) carries the profile pooled without each one (`without_run`). The verdict stands
only if rules 1-4 give the same verdict with any one run of any one r left out; otherwise it is `inconclusive`,
naming the run and what is left without it (`BoundVerdict.without_run` has every leave-out's verdict and
exponents). `not_identifiable` is exempt: a symmetry, or one real G with $f_G = f^*$ to round-off, is a proof
whichever run found it. Why: every pooled envelope is an upper bound on $\omega$, so the pool is the tightest of
them, but on hierarchical-ridge the branch a continuation follows depends on its step and on the machine, and a
pool that one run's branch sets gave m = 0.976 (`polynomial`) on one machine and 0.876 on another
(experiments/lower_bound.md): a verdict that one run carries is that run's luck, not a converged envelope.

`rate`, for a polynomial verdict only: the slope of $\log\varepsilon_n$ on $\log n$ of the two-point curve over
the n whose $\varepsilon_n$ lies in the decade the exponent was fitted on (the sizes are extended as far as
needed, up to $10^{40}$), which $\omega \sim c\,\varepsilon^m$ puts at $-1/(2m)$.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxmoe.bounds.profile import InverseBoundProfile, local_exponent
from jaxmoe.bounds.two_point import two_point_curve
from jaxmoe.validation import require

__all__ = ["VERDICTS", "BoundVerdict", "bound_verdict"]

VERDICTS = ("polynomial", "slower_than_polynomial", "not_identifiable", "inconclusive")
POLYNOMIAL_TOL, SLOW_EXPONENT, SLOW_RISE, RATE_TOL = 0.1, 1.3, 0.5, 0.05


class BoundVerdict(NamedTuple):
    verdict: str
    why: str
    exponents: dict  # r (None for a loss without r) -> m_r or None
    rate: float | None
    without_run: dict = {}  # (r, run left out) -> (verdict, exponents) by rules 1-4 without it (module docstring)


def _top_decade_floor(profile: InverseBoundProfile) -> float | None:
    top = profile.eps >= 0.1 * np.max(profile.eps)
    hit = profile.at_floor & top
    return float(np.max(profile.eps[hit])) if hit.any() else None


def _rate(profile: InverseBoundProfile, sigma: float) -> float | None:
    ok = profile.resolvable
    lo = np.min(profile.eps[ok])
    curve = two_point_curve(profile, sigma, np.logspace(0, 40, 321))
    window = (curve.eps_n <= 10 * lo) & (curve.eps_n > 1.01 * lo)  # not clamped at the grid's end
    if window.sum() < 3:
        return None
    return float(np.polyfit(np.log(curve.n[window]), np.log(curve.eps_n[window]), 1)[0])


def _theory_exponents(m_theory, profiles: dict) -> dict:
    """{r: m_theory_r}: one number for every r, or a dict with an entry per r of `profiles`."""
    if isinstance(m_theory, dict):
        require(set(m_theory) >= set(profiles), "m_theory", sorted(m_theory, key=str),
                f"must have an exponent for every r of the profiles {sorted(profiles, key=str)}")
        values = {r: m_theory[r] for r in profiles}
    else:
        values = {r: m_theory for r in profiles}
    require(all(np.isfinite(m) and m > 0 for m in values.values()), "m_theory", list(values.values()),
            "must be finite exponents > 0")
    return {r: float(m) for r, m in values.items()}


def bound_verdict(profiles, m_theory: float | dict = 1.0, sigma: float = 0.1) -> BoundVerdict:
    """The verdict (module docstring) of `profiles`: one `InverseBoundProfile`, or {r: profile} for r = 1..4.
    `m_theory`: the exponent the theory predicts, one for all r or {r: m_r} (e.g. 2 / r for a power-r loss of a
    strongly identifiable over-fitted cell, where D ~ |dtheta|^r and omega ~ |dtheta|^2)."""
    if isinstance(profiles, InverseBoundProfile):
        profiles = {profiles.r: profiles}
    require(isinstance(profiles, dict) and len(profiles) > 0 and
            all(isinstance(p, InverseBoundProfile) for p in profiles.values()),
            "profiles", type(profiles).__name__, "must be an InverseBoundProfile or a non-empty {r: profile} dict")
    theory = _theory_exponents(m_theory, profiles)
    pooled = _rules(profiles, theory, sigma)
    without = {(r, run): _rules({**profiles, r: left}, theory, sigma)
               for r, p in profiles.items() for run, left in p.without_run.items()}
    table = {key: (v.verdict, v.exponents) for key, v in without.items()}
    if pooled.verdict in ("inconclusive", "not_identifiable"):  # nothing to lose; a symmetry or a witness G
        return pooled._replace(without_run=table)
    for (r, run), v in without.items():
        if v.verdict != pooled.verdict:
            return BoundVerdict("inconclusive", f"{pooled.verdict} only with run {run!r} of r={r}: without it "
                                f"{v.verdict} ({v.why})", pooled.exponents, None, table)
    return pooled._replace(without_run=table)


def _rules(profiles: dict, theory: dict, sigma: float) -> BoundVerdict:
    """Rules 1-4 of the module docstring on {r: profile}."""
    exps = {r: local_exponent(p) for r, p in profiles.items()}
    for r, p in profiles.items():
        if p.not_identifiable:
            return BoundVerdict("not_identifiable", f"the loss changes along {p.not_identifiable} (r={r})", exps, None)
        at = _top_decade_floor(p)
        if at is not None:
            return BoundVerdict("not_identifiable", f"f_G = f* to round-off with D >= {at:.3g} (r={r})", exps, None)
    if any(m is None for m in exps.values()):
        return BoundVerdict("inconclusive", "fewer than 8 resolvable eps in the smallest decade", exps, None)
    if all(abs(m - theory[r]) <= POLYNOMIAL_TOL for r, m in exps.items()):
        first = next(iter(profiles))
        rate = _rate(profiles[first], sigma)
        if rate is not None and abs(rate + 1 / (2 * exps[first])) > RATE_TOL:
            return BoundVerdict("inconclusive", f"m = {exps[first]:.3f} but the two-point rate is {rate:.3f}, not "
                                f"{-1 / (2 * exps[first]):.3f}: the envelope is not a power law there", exps, None)
        return BoundVerdict("polynomial", f"|m_r - m_theory_r| <= {POLYNOMIAL_TOL} (theory {theory})", exps, rate)
    r1 = min(profiles, key=lambda r: (r is not None, r))
    rise = local_exponent(profiles[r1], decade="largest")
    rise = None if rise is None else exps[r1] - rise
    if all(m >= SLOW_EXPONENT for m in exps.values()) and rise is not None and rise >= SLOW_RISE:
        return BoundVerdict("slower_than_polynomial", f"every m_r >= {SLOW_EXPONENT}, m rises by {rise:.2f}", exps,
                            None)
    return BoundVerdict("inconclusive", f"exponents {exps} fit neither rule (m rise {rise})", exps, None)
