"""The lower-bound side of Table 1 (THEORY.md §8): the local inverse bound omega(eps) and the two-point
(Le Cam / Bretagnolle-Huber) minimax curve it gives, for any family model and truth.

- `quadrature`: nodes and weights of $L^2(\\mu)$ for the input laws of `jaxmoe.data`;
- `profile`: `inverse_bound`, the profile $\\omega(\\varepsilon)$ with its float64 floor and per-eps status;
- `two_point`: `two_point_curve`, $LB(n)$ and its maximiser $\\varepsilon_n$;
- `verdict`: `bound_verdict`, the row's verdict from its local exponents (the rule in one place).
"""

from jaxmoe.bounds.profile import START_STATUS, InverseBoundProfile, default_eps, inverse_bound
from jaxmoe.bounds.quadrature import Quadrature, quadrature
from jaxmoe.bounds.two_point import TwoPointCurve, two_point_curve
from jaxmoe.bounds.verdict import VERDICTS, BoundVerdict, bound_verdict

__all__ = ["START_STATUS", "InverseBoundProfile", "default_eps", "inverse_bound", "Quadrature", "quadrature", "TwoPointCurve", "two_point_curve",
           "VERDICTS", "BoundVerdict", "bound_verdict"]
