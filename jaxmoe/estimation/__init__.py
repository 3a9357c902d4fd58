"""Estimation: the least-squares problem, solvers (LM, L-BFGS, Adam), initialisation, and `fit_curve`.

`fit_curve` runs plan -> build -> run: `FitOptions` (options.py: defaults and checks), `plan_curve` (plan.py:
buckets and chunks), `build_chunk_solver` (the compiled, sharded `chunk.solve_chunk`), `run_plan` (curve.py);
`exported.py` keeps the chunk programs across processes (exported with `jax.export`, keyed by their values).
"""

from jaxmoe.estimation.chunk import ChunkResult
from jaxmoe.estimation.curve import CurveFit, CurveInfo, bucket_sizes, draw_padded, fit_curve, run_plan
from jaxmoe.estimation.initialization import near_truth_split, random_init, split_assignment
from jaxmoe.estimation.levenberg_marquardt import LMConfig, LMState
from jaxmoe.estimation.options import FitOptions, default_lanes, default_memory_gib, default_starts
from jaxmoe.estimation.plan import BucketPlan, CurvePlan, build_chunk_solver, chunk_capacity, plan_curve
from jaxmoe.estimation.problem import LeastSquaresProblem, default_block_size, least_squares_problem, ravel
from jaxmoe.estimation.queue import QueueResult, solve_queue
from jaxmoe.estimation.sampling import fit_data, fit_keys, fit_starts
from jaxmoe.estimation.solvers import (
    SOLVER_NAMES,
    Solver,
    adam_solver,
    get_solver,
    lbfgs_solver,
    levenberg_marquardt_solver,
    run_solver,
)
from jaxmoe.estimation.status import STATUS_NAMES, Status, is_converged

__all__ = [
    # exported before the plan -> build -> run split
    "CurveFit", "LMConfig", "LMState", "LeastSquaresProblem", "SOLVER_NAMES", "STATUS_NAMES", "Solver",
    "adam_solver", "bucket_sizes", "draw_padded", "fit_curve", "get_solver", "is_converged", "lbfgs_solver",
    "least_squares_problem", "levenberg_marquardt_solver", "near_truth_split", "random_init", "ravel",
    "run_solver", "split_assignment",
    # options, plan, typed results, statuses
    "FitOptions", "default_starts", "default_lanes", "default_memory_gib", "default_block_size",
    "CurvePlan", "BucketPlan", "plan_curve", "build_chunk_solver", "chunk_capacity", "run_plan",
    "CurveInfo", "ChunkResult", "Status", "QueueResult", "solve_queue", "fit_keys", "fit_data", "fit_starts",
]
