r"""The plan of a rate study's fits: buckets of sizes, chunks of fits within memory, and the compiled chunk solver.

`plan_curve` validates everything and decides the layout before any work (no device computation):

- **Buckets.** With the work queue and sample blocks (the CPU default) a fit's sample count is a run-time
  value (`problem.dynamic_blocks`): all sizes are one bucket, padded to L = the largest size rounded up to
  whole blocks (or `padded_length`), and one program fits the whole curve. Otherwise (one block, as on an
  accelerator, or lockstep) sorted sizes are grouped while max/min <= `bucket_ratio` (`bucket_sizes`); each
  bucket is padded to its largest size L with a mask: one compiled shape per bucket. An explicit
  `bucket_ratio` groups sizes in both cases.
- **Chunks.** A bucket's fits run in chunks of at most `chunk_capacity` fits per device, the most whose
  working set fits `memory_gib` (and at most `chunk_size` in all); chunks are made equal (the last one wastes
  least) and a multiple of the device count (every device gets the same number of fits). The last chunk is
  padded with repeats of its cheapest fit (counted as waste, then dropped) so each bucket compiles once.
- **Devices.** `shard_map` gives device i the i-th block of a chunk, so a chunk is put in `device_order`
  first: its fits, costliest first, each to the device with the least work so far (the cost of a fit is the
  samples one evaluation of it costs). In size order the 7-size curve's 10^5 fits all went to one device and
  the second core bought nothing (speed_and_scale.md). A fit's bits do not depend on its device or position.
- **Run order.** Largest bucket first: its long run hides the (background) compiles of the others.

`build_chunk_solver` makes a bucket's chunk function: `chunk.solve_chunk` under `shard_map` over the devices
(each device runs its own share of the chunk) and `jit`; `chunk_avals` are the abstract arguments it is
compiled for ahead of time.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmoe.validation import require, require_positive_int
from jaxmoe.estimation.chunk import solve_chunk
from jaxmoe.estimation.options import DEFAULT_BUCKET_RATIO, FitOptions
from jaxmoe.estimation.problem import active_samples, dynamic_blocks, ravel

__all__ = [
    "BucketPlan",
    "CurvePlan",
    "bucket_sizes",
    "build_chunk_solver",
    "check_study",
    "chunk_avals",
    "chunk_capacity",
    "chunk_program_key",
    "device_order",
    "evaluated_samples",
    "padded_length",
    "plan_curve",
    "runtime_sizes",
]


class BucketPlan(NamedTuple):
    """One compiled shape: the fits (n, r) of sizes padded to `length`, in chunks of `chunk_size` fits."""

    length: int  # padded sample length L: the bucket's largest size
    jobs: tuple[tuple[int, int], ...]  # its fits (n, r), sizes ascending
    chunk_size: int  # fits per chunk, over all devices (a multiple of the device count)
    lanes: int  # queue lanes per device, within the memory budget

    @property
    def chunks(self) -> int:
        return -(-len(self.jobs) // self.chunk_size)


class CurvePlan(NamedTuple):
    """Everything `fit_curve` runs, decided before any work."""

    setting: Any
    model: Any  # the fitted model (k = options.k)
    options: FitOptions  # validated: every default resolved
    sizes: np.ndarray  # int64, in the caller's order (the rows of the `CurveFit`)
    replicates: int
    seed: int
    jobs: tuple[tuple[int, int], ...]  # every fit (n, r), sizes ascending: the row of its key and starts
    buckets: tuple[BucketPlan, ...]  # in run order: largest length first
    num_params: int  # p, the length of a flat parameter vector

    @property
    def x64(self) -> bool:
        return self.options.precision == "float64"


def bucket_sizes(sizes: np.ndarray, ratio: float) -> list[np.ndarray]:
    """Group sorted sizes into buckets whose max/min <= ratio (each bucket is padded to its max)."""
    buckets, current = [], [sizes[0]]
    for n in sizes[1:]:
        if n / current[0] <= ratio:
            current.append(n)
        else:
            buckets.append(np.array(current))
            current = [n]
    buckets.append(np.array(current))
    return buckets


def chunk_capacity(length: int, p: int, k: int, d: int, restarts: int, schedule: str, lanes: int,
                   memory_gib: float, block_size: int) -> tuple[int, int]:
    """(Most fits per chunk and device, queue lanes) within `memory_gib` per device. Working set per evaluation of
    one start ~ 8 bytes x L x (p for the Jacobian + ~6 k per-atom temporaries) x 2 (forward values and
    tangents), with L one block of samples for the queue (its normal equations are accumulated block by block,
    `block_size` samples each; 0: one block, L = n); a fit's data (x, y, mask) is 8 x L x (d + 2).
    Queue: `lanes` evaluations at once + every fit's data; lockstep: every start of every fit at once
    (whole-sample evaluations)."""
    block = min(length, block_size) if schedule == "queue" and block_size > 0 else length
    per_eval = 8 * block * (p + 6 * k) * 2
    per_data = 8 * length * (d + 2)
    budget = memory_gib * 2**30
    if schedule == "queue":  # lanes get at most half the budget, fits' data the rest
        width = max(1, min(lanes, int(budget / 2 // per_eval)))
        return max(1, int((budget - width * per_eval) // per_data)), width
    return max(1, int(budget // (restarts * per_eval + per_data))), lanes


def _equal_chunks(num_jobs: int, capacity: int, chunk_size: int | None) -> int:
    """Fits per chunk: at most `capacity` (all devices) and `chunk_size`, equal chunks (the last wastes least)."""
    size = min(num_jobs, capacity if chunk_size is None else min(capacity, chunk_size))
    return -(-num_jobs // -(-num_jobs // size))


def device_order(costs, num_devices: int) -> list[int]:
    """A permutation of a chunk's fits (`costs[i]`: fit i's work; `len(costs)` a multiple of `num_devices`) whose
    i-th block of `len(costs) / num_devices` goes to device i: longest-processing-time first, each fit to the
    device with the least work so far that still has room, ties to the lower device and the earlier fit; within
    a device, costliest first (the queue's last steps then run the cheapest fits). Deterministic."""
    per_device = len(costs) // num_devices
    require(per_device * num_devices == len(costs), "costs", len(costs), f"must be a multiple of {num_devices}")
    shares: list[list[int]] = [[] for _ in range(num_devices)]
    loads = [0.0] * num_devices
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        device = min((d for d in range(num_devices) if len(shares[d]) < per_device), key=lambda d: (loads[d], d))
        shares[device].append(i)
        loads[device] += costs[i]
    return [i for share in shares for i in share]


def runtime_sizes(options: FitOptions) -> bool:
    """Whether fits take their sample count at run time (module docstring): the queue with sample blocks."""
    return options.schedule == "queue" and options.block_size > 0


def padded_length(largest: int, options: FitOptions) -> int:
    """L of a bucket whose largest size is `largest`. With run-time sizes: at least `options.padded_length`,
    rounded up to at least two whole blocks (`problem.dynamic_blocks`); otherwise `largest` (padding would
    cost work there, so `padded_length` is ignored)."""
    length = largest
    if runtime_sizes(options):
        length = max(largest, options.padded_length or 0)
        length = max(2, -(-length // options.block_size)) * options.block_size
        assert dynamic_blocks(length, options.block_size)
    return int(length)


def evaluated_samples(plan: CurvePlan, bucket: BucketPlan, n: int) -> int:
    """Samples one evaluation of a size-n fit of `bucket` costs: n rounded up to whole fine blocks with run-time
    sizes (`problem.active_samples`), else the bucket's padded length."""
    o = plan.options
    if runtime_sizes(o) and dynamic_blocks(bucket.length, o.block_size):
        return int(active_samples(int(n), o.block_size))
    return bucket.length


def _plan_bucket(bucket: np.ndarray, replicates: int, p: int, model, setting, options: FitOptions) -> BucketPlan:
    length = padded_length(int(bucket.max()), options)
    jobs = tuple((int(n), r) for n in bucket for r in range(replicates))
    num_devices = len(options.devices)
    cap, width = chunk_capacity(length, p, model.num_atoms, setting.d, options.restarts, options.schedule,
                                options.lanes, options.memory_gib, options.block_size)
    size = _equal_chunks(len(jobs), cap * num_devices, options.chunk_size)
    size = -(-size // num_devices) * num_devices  # every device gets the same number of fits
    return BucketPlan(length, jobs, size, width)


def check_study(sample_sizes, replicates, seed) -> tuple[np.ndarray, int, int]:
    """The study's sizes (int64, as given), replicates and seed, checked (one line each if bad)."""
    sizes = np.asarray(sample_sizes)
    require(sizes.ndim == 1 and sizes.size >= 1, "sample_sizes", sample_sizes, "must be a non-empty 1-d list of sizes")
    require(np.all(sizes == np.round(sizes)) and np.all(sizes >= 1), "sample_sizes", sizes.tolist(),
            "must be integers >= 1")
    sizes = sizes.astype(np.int64)
    require(len(set(sizes.tolist())) == sizes.size, "sample_sizes", sizes.tolist(), "must not repeat a size")
    replicates = require_positive_int("replicates", replicates)
    require(isinstance(seed, (int, np.integer)) and 0 <= seed < 2**31, "seed", seed, "must be an integer in [0, 2^31)")
    return sizes, replicates, int(seed)


def plan_curve(setting, sample_sizes, replicates: int, seed: int = 0, options: FitOptions | None = None) -> CurvePlan:
    """Validate the study and the options (every default resolved) and lay out its buckets and chunks."""
    sizes, replicates, seed = check_study(sample_sizes, replicates, seed)
    options = (FitOptions() if options is None else options).validated(setting)
    model = setting.fitted_model(options.k)
    with jax.enable_x64(options.precision == "float64"):
        p = int(jax.eval_shape(lambda: ravel(model.zeros())[0]).size)  # shapes only: planning compiles nothing
    ascending = np.sort(sizes)
    jobs = tuple((int(n), r) for n in ascending for r in range(replicates))
    ratio = options.bucket_ratio if options.bucket_ratio is not None else (
        np.inf if runtime_sizes(options) else DEFAULT_BUCKET_RATIO)
    require(options.padded_length is None or options.padded_length >= ascending[-1], "padded_length",
            options.padded_length, f"must be >= the largest sample size ({int(ascending[-1])})")
    buckets = [_plan_bucket(b, replicates, p, model, setting, options) for b in bucket_sizes(ascending, ratio)]
    buckets.sort(key=lambda b: -b.length)  # largest first (module docstring)
    return CurvePlan(setting, model, options, sizes, replicates, seed, jobs, tuple(buckets), p)


def build_chunk_solver(plan: CurvePlan, bucket: BucketPlan, mesh: Mesh):
    """The jitted chunk function of `bucket`: `solve_chunk` under `shard_map` over `mesh`'s "fits" axis.
    Arguments (seed, ns, rs): the seed replicated, the fits' (n, r) sharded by fit; returns (`ChunkResult`, the
    work per device)."""
    o = plan.options
    starts = dict(init=o.init, restarts=o.restarts, noise=float(o.init_noise), scale=float(o.init_scale),
                  decay=float(o.init_noise_decay))
    solve = functools.partial(
        solve_chunk, setting=plan.setting, model=plan.model, solver=o.solver, length=bucket.length, starts=starts,
        reference=bool(o.reference), ref_iter=int(o.reference_iterations), schedule=o.schedule, lanes=bucket.lanes,
        block_size=o.block_size, prune=(int(o.prune_at), int(o.prune_keep)))
    by_fit = PartitionSpec("fits")
    return jax.jit(jax.shard_map(solve, mesh=mesh, in_specs=(PartitionSpec(), by_fit, by_fit),
                                 out_specs=(by_fit, by_fit), check_vma=False))


def chunk_program_key(plan: CurvePlan, bucket: BucketPlan, mesh: Mesh) -> tuple | None:
    """What a compiled chunk program is a function of (`build_chunk_solver`'s statics: the setting with its
    truth's values, the fitted model, solver, starts, chunk shape, devices, precision), as a hashable tuple, so a
    later `fit_curve` call can reuse the program; None where a part has no stable hash (then it is rebuilt)."""
    o, st = plan.options, plan.setting
    arrays = ("truth", "data_truth")
    truth = tuple((name, np.asarray(leaf).dtype.str, np.shape(leaf), np.asarray(leaf).tobytes())
                  for name in arrays for leaf in jax.tree_util.tree_leaves(getattr(st, name, None)))
    setting = tuple((f.name, getattr(st, f.name)) for f in dataclasses.fields(st) if f.name not in arrays)
    solver = (o.solver.name, o.solver.max_iter) + tuple(_callable_key(f) for f in (o.solver.init, o.solver.update,
                                                                                  o.solver.fresh))
    devices = tuple((d.platform, d.id) for d in mesh.devices.flat)
    key = (type(st), setting, truth, plan.model, solver, o.init, o.restarts, float(o.init_noise),
           float(o.init_noise_decay), float(o.init_scale), bool(o.reference), int(o.reference_iterations),
           o.schedule, o.block_size, int(o.prune_at), int(o.prune_keep), bucket.length, bucket.chunk_size,
           bucket.lanes, devices, plan.x64)
    try:
        hash(key)
    except TypeError:  # e.g. a user's model holding an array
        return None
    return key


def _callable_key(fn):
    """A `functools.partial` by its function and arguments (get_solver makes new partials of the same update
    each call); anything else by itself."""
    if isinstance(fn, functools.partial):
        return (fn.func, fn.args, tuple(sorted(fn.keywords.items())))
    return fn


def chunk_avals(plan: CurvePlan, bucket: BucketPlan, mesh: Mesh) -> list[jax.ShapeDtypeStruct]:
    """Abstract (seed, ns, rs) of one chunk of `bucket`, for ahead-of-time compilation, in the precision's
    default int type: the seed replicated over `mesh`, ns and rs sharded by fit."""
    int_dtype = jnp.result_type(int)
    replicated, by_fit = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("fits"))
    return [jax.ShapeDtypeStruct((), int_dtype, sharding=replicated),
            jax.ShapeDtypeStruct((bucket.chunk_size,), int_dtype, sharding=by_fit),
            jax.ShapeDtypeStruct((bucket.chunk_size,), int_dtype, sharding=by_fit)]
