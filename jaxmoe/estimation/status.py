r"""Status codes of a fit, shared by every solver: one `IntEnum`, and the plain-int aliases jitted code uses.

A solver state carries `status` as an int32 array: `RUNNING` (-1) while it iterates, then the first stopping
rule that held. The four `CONVERGED_*` codes are the converged ones (`is_converged`): a stopping rule held
with finite values (`CONVERGED_NOISE`, the noise-level rule of LM, has code 5 so that the older codes
keep their values in stored results). `MAX_ITER` means the budget ran out first (the fit is kept and flagged, never dropped);
`NONFINITE` that the objective or the parameters stopped being finite.

The module constants (`CONVERGED_GTOL`, ..., `RUNNING`) are plain Python ints equal to the enum's values:
solvers put them into `jnp.where` under `jit`, where a plain int is a weakly typed scalar (an `IntEnum` member
would go through JAX's dtype inference as an unknown type). `STATUS_NAMES` maps each final code to its name.
"""

from __future__ import annotations

import enum

__all__ = [
    "CONVERGED_FTOL",
    "CONVERGED_GTOL",
    "CONVERGED_NOISE",
    "CONVERGED_STALL",
    "MAX_ITER",
    "NONFINITE",
    "RUNNING",
    "STATUS_NAMES",
    "Status",
    "is_converged",
]


class Status(enum.IntEnum):
    """Why a fit stopped (or `RUNNING`)."""

    RUNNING = -1
    CONVERGED_GTOL = 0  # projected gradient below gtol
    CONVERGED_FTOL = 1  # relative decrease of the objective below ftol on an accepted step
    CONVERGED_STALL = 2  # no decrease possible at working precision (LM damping at its cap)
    MAX_ITER = 3  # iteration budget spent before a stopping rule held
    NONFINITE = 4  # objective or parameters became non-finite
    # The objective fell by less than a fraction of the statistical resolution L / n over the last m iterations
    # (LMConfig.noise_window; on by default for over-fitted fits, `solvers.default_options`).
    CONVERGED_NOISE = 5


CONVERGED_GTOL = int(Status.CONVERGED_GTOL)
CONVERGED_FTOL = int(Status.CONVERGED_FTOL)
CONVERGED_STALL = int(Status.CONVERGED_STALL)
MAX_ITER = int(Status.MAX_ITER)
NONFINITE = int(Status.NONFINITE)
CONVERGED_NOISE = int(Status.CONVERGED_NOISE)
RUNNING = int(Status.RUNNING)
# Final codes only (a finished fit is never RUNNING): {0: "converged_gtol", ..., 4: "nonfinite"}.
STATUS_NAMES = {int(s): s.name.lower() for s in Status if s != Status.RUNNING}


def is_converged(status):
    """True for the four converged statuses (a stopping rule held with finite values)."""
    return ((status >= 0) & (status <= CONVERGED_STALL)) | (status == CONVERGED_NOISE)
