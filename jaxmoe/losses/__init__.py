"""Losses and rate inference: Voronoi losses (THEORY.md §3-5), per-parameter / expert / regression errors,
log-log slopes with bootstrap intervals, and polynomial vs slower-than-polynomial law comparison."""

from jaxmoe.losses.errors import (
    ExpertSupErrors,
    HierarchicalParameterErrors,
    ParameterErrors,
    expert_grid,
    expert_sup_errors,
    parameter_errors,
    quadrature_rule,
    regression_l2_error,
    regression_l2_error_quadrature,
)
from jaxmoe.losses.rates import (
    NO_PREFERENCE_AIC,
    LawComparison,
    LawFit,
    SlopeFit,
    WindowSlopes,
    bootstrap_se,
    compare_laws,
    local_slopes,
    loglog_slope,
    theil_sen_fit,
    theil_sen_slope,
    window_slopes,
)
from jaxmoe.losses.voronoi import (
    LOSSES,
    TRANSLATIONS,
    HierarchicalCells,
    VoronoiCells,
    batched_loss,
    normalize_translation,
    voronoi_cells,
    voronoi_loss_d1,
    voronoi_loss_d2r,
    voronoi_loss_d4,
    voronoi_loss_hierarchical,
    voronoi_loss_sigmoid,
    voronoi_loss_temperature,
)

from jaxmoe.losses.curve import curve_metrics, fit_metrics, parameter_errors_fn  # noqa: E402

__all__ = [
    "curve_metrics", "fit_metrics", "parameter_errors_fn",
    "ExpertSupErrors", "HierarchicalParameterErrors", "ParameterErrors", "expert_grid", "expert_sup_errors",
    "parameter_errors", "quadrature_rule", "regression_l2_error", "regression_l2_error_quadrature",
    "NO_PREFERENCE_AIC", "LawComparison", "LawFit", "SlopeFit", "WindowSlopes", "bootstrap_se", "compare_laws", "local_slopes", "loglog_slope",
    "theil_sen_fit", "theil_sen_slope", "window_slopes",
    "LOSSES", "TRANSLATIONS", "HierarchicalCells", "VoronoiCells", "batched_loss", "normalize_translation",
    "voronoi_cells", "voronoi_loss_d1", "voronoi_loss_d2r", "voronoi_loss_d4", "voronoi_loss_hierarchical",
    "voronoi_loss_temperature", "voronoi_loss_sigmoid",
]
