"""The lower-bound side of Table 1 (THEORY.md §8): the local inverse bound omega(eps) and the two-point
(Le Cam / Bretagnolle-Huber) minimax curve it gives, for any family model and truth.

- `quadrature`: nodes and weights of $L^2(\\mu)$ for the input laws of `jaxmoe.data`;
- `profile`: `inverse_bound`, the profile $\\omega(\\varepsilon)$ with its float64 floor and per-eps status
  (`pool_profiles`, `inverse_bound_on_grids`, `inverse_bounds_on_grids`: envelopes over several r, runs or eps
  grids, each with the pool left one run out);
- `difference`: `path_difference`, $f_G - f_{G_0}$ without the float64 cancellation
  (`inverse_bound(difference="path")`);
- `two_point`: `two_point_curve`, $LB(n)$ and its maximiser $\\varepsilon_n$;
- `alternatives`: `local_alternatives`, the estimator's risk over the two-point pairs against LB(n) (Monte Carlo);
- `conditioning`: `conditioning`, the exact-fitted Fisher spectrum, the profile constant and the predicted onset
  n / sigma^2; `search_truths` for well-conditioned truths;
- `verdict`: `bound_verdict`, the row's verdict from its local exponents (the rule in one place);
- `plot`: `plot_bound`, omega(eps) and LB(n) with the theory's slopes (PNG and PDF);
- `taylor`: `taylor_check`, the profile recomputed by Taylor-mode autodiff (`jax.experimental.jet`), floor-free.
"""

from jaxmoe.bounds.alternatives import LocalAlternatives, local_alternatives, pair_bounds
from jaxmoe.bounds.conditioning import Conditioning, conditioning, search_truths
from jaxmoe.bounds.difference import DIFFERENCES, path_difference
from jaxmoe.bounds.plot import plot_bound
from jaxmoe.bounds.profile import (CONTINUATIONS, OPTIMISERS, START_STATUS, InverseBoundProfile, default_eps,
                                   default_nodes, inverse_bound, inverse_bound_on_grids, inverse_bounds_on_grids,
                                   loss_function, pool_profiles, ray_points)
from jaxmoe.bounds.quadrature import Quadrature, quadrature
from jaxmoe.bounds.taylor import TaylorCheck, taylor_check
from jaxmoe.bounds.two_point import TwoPointCurve, two_point_curve
from jaxmoe.bounds.verdict import VERDICTS, BoundVerdict, bound_verdict

__all__ = ["Conditioning", "conditioning", "search_truths", "LocalAlternatives", "local_alternatives", "pair_bounds",
           "START_STATUS", "InverseBoundProfile", "default_eps", "default_nodes", "inverse_bound", "loss_function",
           "pool_profiles", "ray_points", "inverse_bound_on_grids", "inverse_bounds_on_grids", "CONTINUATIONS",
           "OPTIMISERS", "DIFFERENCES", "path_difference",
           "Quadrature", "quadrature", "TwoPointCurve", "two_point_curve", "VERDICTS", "BoundVerdict", "bound_verdict",
           "plot_bound", "TaylorCheck", "taylor_check"]
