"""jaxmoe: executable convergence-rate theory for softmax-gating mixture of experts.

Layout: `models` (experts, routers, gates), `families` (softmax, dense-to-sparse, hierarchical, sigmoid
gating: one module each, owning everything family-specific), `data`, `presets` (Table 1 truths),
`estimation` (least squares, solvers, `fit_curve`), `losses` (Voronoi losses, errors, rates),
`identifiability` (PDE residuals, Definitions 1-2), `bounds` (inverse-bound profiles, two-point lower bounds), `sweeps` (config files, resumable sweeps, reports), `cli`. See README.md and THEORY.md for the maths.
"""

from jaxmoe import identifiability
from jaxmoe import bounds
from jaxmoe.bounds import (BoundVerdict, InverseBoundProfile, LocalAlternatives, TwoPointCurve, bound_verdict, inverse_bound,
                           local_alternatives, two_point_curve)
from jaxmoe.runtime import cache_folder, enable_compilation_cache, use_all_cores
from jaxmoe.validation import JaxMoEInputError
from jaxmoe.data import TruncatedNormalInputs, UniformInputs, get_input_law, sample_data
from jaxmoe.estimation import *  # noqa: F401,F403
from jaxmoe.families import *  # noqa: F401,F403
from jaxmoe.identifiability import (
    PAPER_CASES,
    IdentifiabilityReport,
    PDEResidual,
    Relation,
    build_family,
    check_independence,
    check_model,
    homogeneity_residual,
    paper_verdicts,
    pde9_residual,
    pde15_residual,
    pde28_residuals,
    pde_table,
)
from jaxmoe.losses import *  # noqa: F401,F403
from jaxmoe.models import *  # noqa: F401,F403
from jaxmoe.presets import PRESET_NAMES, Setting, get_preset
from jaxmoe.sweeps import (
    GridConfig,
    SweepConfig,
    SweepResults,
    format_summary,
    load_config,
    load_results,
    load_sweep,
    preset_config,
    run_grid,
    run_sweep,
    write_report,
)

__version__ = "0.1.0"

enable_compilation_cache()  # on by default, in the user's cache folder (jaxmoe/runtime.py; JAXMOE_COMPILATION_CACHE=0: off)
