r"""Identifiability lab: autodiff checks of the PDE interactions (eqs. 9, 15, 28) and of strong
identifiability / algebraic independence (Definitions 1, 2) for the paper's experts and routers and for any
user-written `jaxmoe.Expert` / `jaxmoe.Router`. See `independence` for exactly what set of functions is
tested and how the numerical verdict is decided."""

from jaxmoe.identifiability.family import Family, build_family, draw_inputs, draw_points, family_matrix
from jaxmoe.identifiability.independence import (
    DEFAULT_MARGIN,
    DEFAULT_TOL,
    IdentifiabilityReport,
    Relation,
    check_independence,
    format_relation,
)
from jaxmoe.identifiability.pde import (
    PDEResidual,
    format_pde_table,
    homogeneity_residual,
    pde9_residual,
    pde15_residual,
    pde28_residuals,
    pde_table,
)
from jaxmoe.identifiability.cases import PAPER_CASES, check_model, paper_verdicts

__all__ = [
    "DEFAULT_MARGIN", "DEFAULT_TOL", "Family", "IdentifiabilityReport", "PAPER_CASES", "PDEResidual", "Relation",
    "build_family", "check_independence", "check_model", "draw_inputs", "draw_points", "family_matrix", "format_pde_table",
    "format_relation", "homogeneity_residual", "paper_verdicts", "pde9_residual", "pde15_residual",
    "pde28_residuals", "pde_table",
]
