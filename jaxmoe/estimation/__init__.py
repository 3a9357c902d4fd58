"""Estimation: the least-squares problem, solvers (LM, L-BFGS, Adam), initialisation, and `fit_curve`."""

from jaxmoe.estimation.curve import CurveFit, bucket_sizes, draw_padded, fit_curve
from jaxmoe.estimation.initialization import near_truth_split, random_init, split_assignment
from jaxmoe.estimation.levenberg_marquardt import LMConfig, LMState
from jaxmoe.estimation.problem import STATUS_NAMES, LeastSquaresProblem, is_converged, least_squares_problem, ravel
from jaxmoe.estimation.solvers import (
    SOLVER_NAMES,
    Solver,
    adam_solver,
    get_solver,
    lbfgs_solver,
    levenberg_marquardt_solver,
    run_solver,
)
