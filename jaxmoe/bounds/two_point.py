r"""The two-point (Le Cam / Bretagnolle-Huber) minimax lower bound from an inverse-bound profile.

For $G_\varepsilon$ with $D(G_\varepsilon, G^*) = \varepsilon$ and $\|f_{G_\varepsilon} - f^*\| = \omega(\varepsilon)$,
Gaussian noise gives $\mathrm{KL}(P^n_{G^*}, P^n_{G_\varepsilon}) = n\,\omega^2 / (2\sigma^2)$. If the loss
satisfies the weak triangle inequality $D(G_1, G_2) \le C\,(D(G, G_1) + D(G, G_2))$, every G has
$D(G, G^*) + D(G, G_\varepsilon) \ge s(\varepsilon) = \varepsilon / C$, and for any estimator
$$\max_{G \in \{G^*, G_\varepsilon\}} \mathbb{E}\, D(\hat G_n, G) \ge \tfrac12 \cdot \tfrac{s}{1} \int \min(p_0, p_1)
\ge \frac{s(\varepsilon)}{4} \exp\!\Big(-\frac{n\,\omega(\varepsilon)^2}{2\sigma^2}\Big)$$
(Bretagnolle-Huber: $\int \min(p_0, p_1) \ge \frac12 e^{-\mathrm{KL}}$). $LB(n)$ is its supremum over the
resolvable $\varepsilon$ of the profile, $\varepsilon_n$ the maximiser. The paper proves a constant C exists
for its losses without a value: `triangle_constant` (default 1, the metric case) scales LB by 1/C.
With $\omega \sim c\,\varepsilon^m$, $\varepsilon_n = (\sigma^2 / (n c^2 m))^{1/(2m)} \sim n^{-1/(2m)}$.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxmoe.data import check_sigma
from jaxmoe.validation import require

__all__ = ["TwoPointCurve", "two_point_curve"]


class TwoPointCurve(NamedTuple):
    """Per n: LB(n), its maximiser eps_n, and the local slope d log eps_n / d log n."""

    n: np.ndarray
    lower_bound: np.ndarray
    eps_n: np.ndarray
    local_slope: np.ndarray
    sigma: float
    triangle_constant: float


def two_point_curve(profile, sigma: float, sizes=None, triangle_constant: float = 1.0) -> TwoPointCurve:
    """LB(n) = sup over resolvable eps of (eps / C) / 4 * exp(-n omega(eps)^2 / (2 sigma^2)), n in `sizes`
    (default 41 sizes from 10^2 to 10^12)."""
    sigma = check_sigma(sigma)
    require(np.isfinite(triangle_constant) and triangle_constant >= 1, "triangle_constant", triangle_constant,
            "must be a finite number >= 1")
    n = np.geomspace(1e2, 1e12, 41) if sizes is None else np.asarray(sizes, dtype=float).reshape(-1)
    require(n.size >= 2 and bool(np.all(np.isfinite(n) & (n >= 1))), "sizes", n.tolist(),
            "must be at least two sample sizes >= 1")
    ok = profile.resolvable
    require(bool(ok.any()), "profile", "no resolvable eps", "needs at least one resolvable eps")
    eps, omega = _fine(profile.eps[ok], profile.omega[ok])
    log_terms = (np.log(eps / triangle_constant / 4.0)[None, :]
                 - n[:, None] * omega[None, :] ** 2 / (2 * sigma ** 2))
    best = np.argmax(log_terms, axis=1)
    eps_n = eps[best]
    slope = np.gradient(np.log(eps_n), np.log(n))
    return TwoPointCurve(n, np.exp(log_terms[np.arange(n.size), best]), eps_n, slope, sigma, triangle_constant)


def _fine(eps, omega, factor: int = 32):
    """The envelope on a grid `factor` times finer (log omega linear in log eps between points), so that
    eps_n moves continuously with n instead of jumping between profile points."""
    if eps.size < 2:
        return eps, omega
    order = np.argsort(eps)
    le, lo = np.log(eps[order]), np.log(omega[order])
    grid = np.linspace(le[0], le[-1], factor * (eps.size - 1) + 1)
    return np.exp(grid), np.exp(np.interp(grid, le, lo))
