"""Moved: the structured Jacobians are the families' (`jaxmoe.families`); `regression_jacobian` is there."""

from jaxmoe.families import regression_jacobian  # noqa: F401  (kept until estimation/problem.py imports it there)
