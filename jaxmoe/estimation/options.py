r"""`FitOptions`: every option of `fit_curve`, its default and its validation, in one place.

A `FitOptions` holds what a rate study's fits are made of besides (setting, sizes, replicates, seed): the
solver, the fitted k, the starts, the reference refinement, the layout of the work (buckets, chunks, memory,
lanes, devices, sample blocks) and the precision. Building one checks every field that does not need the
setting (a bad value is one line, `field=value: what is allowed`, before any work);
`FitOptions.validated(setting)` then resolves every `None` default against the setting and the devices:

- `k`: `setting.k_fit`; checked k >= k* (`Setting.fitted_model`);
- `restarts`, `init_noise`: `default_starts(k > k*)`. The over-fitted least squares has many local minima
  (experiments/README.md, "how many starts?"): on softmax-ridge with k = k* + 1 (n <= 10^4), best of 4 splits
  with noise 0.1 reached the best minimum found by any of six start strategies in 45% of fits (within
  sigma^2 / n of it in 91%), best of 32 with noise 0.3 in 98.8% (100%) at 3.4x the CPU time (4.7x at
  n = 10^5); a pool with 64 starts finds lower minima still (32 reach them in 84%, 95% within sigma^2 / n);
- `init_noise_decay`: 0, the same near-truth noise at every n; a > 0 gives fit (n, r) the noise
  `init_noise * n ** -a`: with `restarts=1` that is the field's oracle-initialised protocol (one start at the
  split truth, its noise shrinking with n, e.g. 0.005 n^-0.083), a local fit, not the global least squares;
- `prune_at`, `prune_keep`: successive halving of the starts, off by default (`prune_at = 0`): every start runs
  to iteration `prune_at`, then each fit's `prune_keep` best go on to the iteration limit (`chunk.py`). It is a
  no-op where `prune_keep >= restarts` or `prune_at >= max_iter`, and needs the work queue. Measured through
  the engine (experiments/flat_landscapes.md (e); over-fitted hierarchical rows, 24 fits each, n 10^2..10^4,
  budget 2000): (300, 8) of 32 starts ends within 0.1 sigma^2 / n of all 32 in 79% (hierarchical-linear) and
  83% (hierarchical-ridge) of fits, at 36-47% of the iterations, worst at n = 10^4 (62%), so it is not a default;
- `solver`: a `Solver` (`get_solver`); a solver given by name gets `solvers.default_options`: the gradient
  tolerance of the setting's noise level, `noise_scaled_gtol(setting.sigma)` (the stopping rules scale with
  sigma^2), and for an over-fitted k LM's budget of 1000 iterations with the noise-level stopping rule
  (`solvers` docstring, "Over-fitted budgets"; a `Solver` object keeps its own); `schedule="auto"`: the work queue iff the solver has a fresh state
  (`Solver.fresh`), else lockstep `vmap`;
- `devices`: `jax.local_devices()`; `memory_gib`, `lanes`, `block_size`: per platform of the first device
  (`default_memory_gib`, `default_lanes`, `problem.default_block_size`).

Lanes, block length, chunks and devices change the speed, not the fits (up to round-off where a lane's
arithmetic is compiled for another batch shape). `FitOptions.defaults_dict()` lists the fields and their
defaults as plain JSON-able values, for schemas that must agree with `fit_curve` (the sweep config).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from jaxmoe.validation import require, require_positive_int
from jaxmoe.estimation.problem import default_block_size
from jaxmoe.estimation.solvers import Solver, default_options, get_solver

__all__ = [
    "EXACT_INIT_NOISE",
    "DEFAULT_BUCKET_RATIO",
    "EXACT_RESTARTS",
    "INIT_NAMES",
    "OVERFIT_INIT_NOISE",
    "OVERFIT_RESTARTS",
    "PRECISION_NAMES",
    "SCHEDULE_NAMES",
    "FitOptions",
    "default_lanes",
    "default_memory_gib",
    "default_starts",
    "pruning_changes_fits",
]

INIT_NAMES = ("near_truth", "mixed", "random")
SCHEDULE_NAMES = ("auto", "queue", "lockstep")
PRECISION_NAMES = ("float32", "float64")

# Starts per fit, and the near-truth perturbation, by default (the measurements are in the module docstring).
EXACT_RESTARTS, OVERFIT_RESTARTS = 1, 32
EXACT_INIT_NOISE, OVERFIT_INIT_NOISE = 0.1, 0.3
DEFAULT_BUCKET_RATIO = 1.25  # where sizes need a compiled shape each: those within 1.25x share one


def default_starts(overfitted: bool) -> tuple[int, float]:
    """(restarts, init_noise) that `fit_curve` uses by default for an exact-fitted or an over-fitted k."""
    return (OVERFIT_RESTARTS, OVERFIT_INIT_NOISE) if overfitted else (EXACT_RESTARTS, EXACT_INIT_NOISE)


def pruning_changes_fits(prune_at: int, prune_keep: int, restarts: int, max_iter: int) -> bool:
    """Whether successive halving changes a fit's starts: a pruning iteration in (0, max_iter) and fewer starts
    kept than there are (otherwise every start runs to the limit, as without it)."""
    return 0 < prune_at < max_iter and prune_keep < restarts


def default_lanes(num_devices: int = 1, platform: str = "cpu") -> int:
    """Queue width per device. CPU: 2, whatever the core and device count, so that a fit's arithmetic (compiled
    for the lanes' batch shape) is the same on every machine; with one device per core (`jaxmoe.use_all_cores`,
    the CLI's default) that is 2 lanes per core (on the 2-core CPU, 4 lanes per core were best at n = 10^4, 2
    at n <= 1000, by < 40%; 16 lost everywhere; experiments/README.md). GPU/TPU: 512 lanes (H100, standard
    sweep: LM run 2.4 s with 32 lanes, 1.9 s with 128, 1.7 s with 512; experiments/results/h100/probe_lanes.json).
    `num_devices` is kept for callers that pass it; the width does not depend on it."""
    return 2 if platform == "cpu" else 512


def default_memory_gib(device) -> float:
    """Per-device memory budget: 2 GiB on CPU; on an accelerator half of what it reports (16 GiB if it does
    not), so that 512 lanes of whole-sample Jacobians fit (about 24 GiB at n = 10^5, p = 12)."""
    if device.platform == "cpu":
        return 2.0
    try:
        return 0.5 * device.memory_stats()["bytes_limit"] / 2**30
    except Exception:  # noqa: BLE001 -- backends without memory_stats
        return 16.0


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(value)))


def _are_devices(devices) -> bool:
    try:
        devices = tuple(devices)
        return len(devices) >= 1 and len(set(devices)) == len(devices) and all(hasattr(d, "platform") for d in devices)
    except TypeError:  # not iterable, or unhashable items
        return False


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """The options of `fit_curve` (module docstring); `None` is resolved by `validated(setting)`."""

    solver: str | Solver = "lm"  # a name in SOLVER_NAMES or a `Solver`
    k: int | None = None  # fitted atoms (per group for the hierarchical family); None: setting.k_fit
    init: str = "near_truth"  # one of INIT_NAMES
    restarts: int | None = None  # starts per fit; None: default_starts(k > k*)
    init_noise: float | None = None  # near-truth perturbation; None: default_starts(k > k*)
    init_noise_decay: float = 0.0  # noise at n: init_noise * n ** -init_noise_decay (module docstring)
    init_scale: float = 3.0  # random starts are uniform on [-init_scale, init_scale]
    prune_at: int = 0  # successive halving: the iteration at which starts are pruned; 0: off (module docstring)
    prune_keep: int = 8  # starts per fit that go on past prune_at
    reference: bool = False  # also run a long LM refinement from the split truth
    reference_iterations: int = 3000
    min_rtol: float = 1e-6  # reached_minimum: objective <= reference * (1 + min_rtol) + min_atol
    min_atol: float = 1e-12
    # Sizes share a padded shape while max / min <= bucket_ratio; None: one shape for all sizes where fits take
    # their sample count at run time (the queue with sample blocks, `plan.runtime_sizes`), else
    # DEFAULT_BUCKET_RATIO.
    bucket_ratio: float | None = None
    padded_length: int | None = None  # pad every fit's data to at least this length (one program for many calls)
    chunk_size: int | None = None  # most fits per chunk; None: what memory_gib allows
    memory_gib: float | None = None  # per-device working set; None: default_memory_gib
    precision: str = "float64"  # one of PRECISION_NAMES
    schedule: str = "auto"  # one of SCHEDULE_NAMES
    lanes: int | None = None  # queue width per device; None: default_lanes
    devices: Sequence | None = None  # the devices the fits are sharded over; None: jax.local_devices()
    block_size: int | None = None  # samples per normal-equation block, 0: one block; None: per platform

    def __post_init__(self):
        if self.devices is not None:
            require(_are_devices(self.devices), "devices", self.devices,
                    "must be a non-empty list of distinct jax devices")
            object.__setattr__(self, "devices", tuple(self.devices))  # immutable, like the other fields
        self._check_values()
        self._check_layout()

    def _check_values(self) -> None:
        """What is fitted: solver, k, starts, reference, precision."""
        solver = get_solver(self.solver)  # an unknown name is one line
        require(self.k is None or _is_int(self.k), "k", self.k, "must be None or an integer >= k*")
        require(self.init in INIT_NAMES, "init", self.init, f"must be one of {list(INIT_NAMES)}")
        if self.restarts is not None:
            require_positive_int("restarts", self.restarts)
        require(self.init_noise is None or (_is_real(self.init_noise) and self.init_noise >= 0), "init_noise",
                self.init_noise, "must be finite and >= 0")
        require(_is_real(self.init_noise_decay) and self.init_noise_decay >= 0, "init_noise_decay",
                self.init_noise_decay, "must be a finite number >= 0 (0: the same noise at every n)")
        require(_is_real(self.init_scale) and self.init_scale > 0, "init_scale", self.init_scale,
                "must be a finite number > 0")
        require(_is_int(self.prune_at) and self.prune_at >= 0, "prune_at", self.prune_at,
                "must be an integer >= 0 (0: no pruning of starts)")
        require_positive_int("prune_keep", self.prune_keep)
        require(isinstance(self.reference, (bool, np.bool_)), "reference", self.reference, "must be True or False")
        require_positive_int("reference_iterations", self.reference_iterations)
        for name in ("min_rtol", "min_atol"):
            value = getattr(self, name)
            require(_is_real(value) and value >= 0, name, value, "must be a finite number >= 0")
        require(self.precision in PRECISION_NAMES, "precision", self.precision, "must be 'float32' or 'float64'")
        require(self.schedule in SCHEDULE_NAMES, "schedule", self.schedule, "must be 'auto', 'queue' or 'lockstep'")
        require(self.schedule != "queue" or solver.fresh is not None, "schedule", self.schedule,
                f"'queue' needs the 'lm' solver or another Solver with a fresh state (Solver.fresh), not "
                f"{solver.name!r}")

    def _check_layout(self) -> None:
        """How the work is laid out: buckets, chunks, memory, lanes, blocks (devices: `__post_init__`)."""
        require(self.bucket_ratio is None or (_is_real(self.bucket_ratio) and self.bucket_ratio >= 1.0),
                "bucket_ratio", self.bucket_ratio, "must be None (automatic) or a number >= 1")
        require(self.padded_length is None or (_is_int(self.padded_length) and self.padded_length >= 1),
                "padded_length", self.padded_length, "must be None or an integer >= 1")
        if self.chunk_size is not None:
            require_positive_int("chunk_size", self.chunk_size)
        require(self.memory_gib is None or (_is_real(self.memory_gib) and self.memory_gib > 0), "memory_gib",
                self.memory_gib, "must be None or a finite number > 0")
        require(self.lanes is None or (_is_int(self.lanes) and self.lanes >= 1), "lanes", self.lanes,
                "must be None or an integer >= 1")
        require(self.block_size is None or (_is_int(self.block_size) and self.block_size >= 0), "block_size",
                self.block_size, "must be None (per platform), 0 (one block) or an integer >= 1")

    def replace(self, **changes) -> FitOptions:
        """A copy with `changes` (checked like a new one); an unknown name is one line."""
        names = [f.name for f in dataclasses.fields(self)]
        for name, value in changes.items():
            require(name in names, name, value, f"is not a fit_curve option (FitOptions has {', '.join(names)})")
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def defaults_dict(cls, overfitted: bool | None = None) -> dict[str, Any]:
        """{field: default} for every field, as plain JSON-able values (str, int, float, bool, None), in field
        order. `None` means "resolved by `validated`" (module docstring); with `overfitted` given, `restarts`
        and `init_noise` are the per-k defaults `default_starts(overfitted)` instead. Meant for schemas that
        must agree with `fit_curve`'s defaults (the sweep config writes out a complete `[solver]` table)."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        if overfitted is not None:
            defaults["restarts"], defaults["init_noise"] = default_starts(bool(overfitted))
        return defaults

    def validated(self, setting) -> FitOptions:
        """These options with every `None` resolved for `setting` and the devices (module docstring): `solver`
        a `Solver`, `schedule` 'queue' or 'lockstep', `k`, `restarts`, `init_noise`, `devices`, `memory_gib`,
        `lanes` and `block_size` concrete. Raises the one-line error of a k < k*."""
        model = setting.fitted_model(self.k)
        overfitted = model.components > setting.k_star
        restarts, init_noise = default_starts(overfitted)
        solver = self.solver
        if isinstance(solver, str):
            solver = get_solver(solver, **default_options(solver, setting.sigma, overfitted))
        schedule = self.schedule
        if schedule == "auto":
            schedule = "queue" if solver.fresh is not None else "lockstep"
        require(self.prune_at == 0 or schedule == "queue", "prune_at", self.prune_at,
                f"pruning starts needs the work queue (schedule 'queue' or 'auto' with a solver that has a fresh "
                f"state), not schedule {schedule!r} with solver {solver.name!r}")
        devices = tuple(jax.local_devices()) if self.devices is None else self.devices
        platform = devices[0].platform
        return self.replace(
            solver=solver, k=model.components, schedule=schedule, devices=devices,
            restarts=restarts if self.restarts is None else int(self.restarts),
            init_noise=float(init_noise if self.init_noise is None else self.init_noise),
            memory_gib=default_memory_gib(devices[0]) if self.memory_gib is None else float(self.memory_gib),
            lanes=default_lanes(len(devices), platform) if self.lanes is None else int(self.lanes),
            block_size=default_block_size(platform) if self.block_size is None else int(self.block_size))
