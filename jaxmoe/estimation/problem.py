r"""The least-squares problem of one fit (eq. 3, 13, 21): $\hat G_n \in \arg\min_{G \in \Theta} \frac1n \sum_j (Y_j - f_G(X_j))^2$.

Solvers work on a flat parameter vector $\theta \in \mathbb{R}^p$ (`jax.flatten_util.ravel_pytree` of the
model's parameter NamedTuple) and on scaled, masked residuals
$r_j(\theta) = m_j (Y_j - f_\theta(X_j)) / \sqrt{n}$, so that $\|r\|^2$ **is** the objective (the mean squared
error over the n real samples). The mask $m_j \in \{0, 1\}$ lets fits of different sizes share one padded
array shape without changing any fit's objective.

Gauss-Newton solvers need only the normal equations of a point, $(\|r\|^2, J^\top r, J^\top J)$, not r and J.
`normal_equations` accumulates them over blocks of `block_size` samples (a `fori_loop` over the sample axis):
a block's Jacobian stays in cache between being formed and being multiplied, instead of an n x p array
written to memory and read back, and one product of the augmented block [J r] with itself gives all three
(measured together 2-3x faster per evaluation at n >= 10^4 on the 2-core CPU, experiments/speed_and_scale.md).
The sums differ from the unblocked ones by round-off only.

**Sample count at run time.** With `active_length` (a traced integer: the mask is zero from there on, as
`sampling.draw_padded` makes it) the loop runs over the blocks that hold samples only: whole blocks of
`block_size`, then fine blocks of `block_size // 8` for the rest, so a fit of n samples costs about n, not the
padded length L, and every size of a curve shares one compiled program (L a multiple of `block_size`). The
blocks depend on n alone, so a fit's sums are the same whatever L pads it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxmoe.estimation.status import (  # noqa: F401 -- re-exported: solvers and callers import them from here
    CONVERGED_FTOL,
    CONVERGED_GTOL,
    CONVERGED_STALL,
    MAX_ITER,
    NONFINITE,
    RUNNING,
    STATUS_NAMES,
    Status,
    is_converged,
)
from jaxmoe.families import regression_jacobian


class LeastSquaresProblem(NamedTuple):
    """One fit's problem: residuals of a flat parameter vector, and the box $\\Theta$ as flat bounds."""

    residuals: Callable[[Float[Array, "p"]], Float[Array, "n"]]
    lower: Float[Array, "p"]
    upper: Float[Array, "p"]
    # r and its n x p Jacobian in one fused pass (structured per-atom blocks, see jaxmoe/families).
    residuals_and_jacobian: Callable[[Float[Array, "p"]], tuple[Float[Array, "n"], Float[Array, "n p"]]] | None = None
    # (||r||^2, J^T r, J^T J) accumulated over sample blocks (see the module docstring); None: from `linearise`.
    normal_equations_fn: Callable[[Float[Array, "p"]], tuple] | None = None
    # n, the samples the objective averages over (the MSE's denominator): the statistical resolution of the
    # objective is ~ objective / n (LM's noise-level stopping rule). None: unknown.
    num_samples: Float[Array, ""] | None = None

    def linearise(self, theta):
        if self.residuals_and_jacobian is not None:
            return self.residuals_and_jacobian(theta)
        return self.residuals(theta), jax.jacfwd(self.residuals)(theta)

    def normal_equations(self, theta) -> tuple[Float[Array, ""], Float[Array, "p"], Float[Array, "p p"]]:
        """Objective $\\|r\\|^2$, $J^\\top r$ (half its gradient) and $J^\\top J$ (half its Gauss-Newton Hessian)."""
        if self.normal_equations_fn is not None:
            return self.normal_equations_fn(theta)
        r, jac = self.linearise(theta)
        return jnp.dot(r, r), jac.T @ r, jac.T @ jac

    def objective(self, theta: Float[Array, "p"]) -> Float[Array, ""]:
        r = self.residuals(theta)
        return jnp.dot(r, r)

    def project(self, theta: Float[Array, "p"]) -> Float[Array, "p"]:
        return jnp.clip(theta, self.lower, self.upper)

    @property
    def free(self):
        """Coordinates not pinned by the bounds (lower < upper)."""
        return self.lower < self.upper


def ravel(params) -> tuple[Float[Array, "p"], Callable]:
    """Flat vector and its inverse for a parameter NamedTuple."""
    return jax.flatten_util.ravel_pytree(params)


# Samples per block of `normal_equations` on CPU (experiments/speed_and_scale.md: 256-512 were fastest on the
# 2-core CPU: a block's Jacobian stays in cache). On an accelerator one block (the whole sample) is fastest:
# a 512-sample `fori_loop` is ~200 small sequential kernels at n = 10^5 (H100: the standard sweep's LM ran in
# 3.5 s with 512, 2.1 s with 8192, 1.7 s with one block; experiments/results/h100/probe_blocks.json).
CPU_BLOCK_SIZE = 512


def default_block_size(platform: str | None = None) -> int:
    """Samples per block of `normal_equations` on `platform` (default: `jax.default_backend()`):
    `CPU_BLOCK_SIZE` on CPU, 0 (one block) on GPU/TPU. A caller that wants another length passes `block_size`
    to `least_squares_problem` (`fit_curve`: `FitOptions.block_size`); nothing here is meant to be mutated."""
    return CPU_BLOCK_SIZE if (platform or jax.default_backend()) == "cpu" else 0


def least_squares_problem(
    model, x: Float[Array, "d n"], y: Float[Array, "n"], mask: Float[Array, "n"] | None = None, gauge: bool = True,
    block_size: int | None = None, num_samples: Float[Array, ""] | None = None,
    active_length: Int[Array, ""] | None = None,
) -> tuple[LeastSquaresProblem, Callable]:
    """Build the problem of fitting `model` to (x, y); returns it with the `unravel` map theta -> params.

    With `gauge=True` (default) the softmax translation is fixed (`model.fix_gauge`): the last atom's gate
    coordinates are pinned to 0 by the bounds, and starting points must be passed through `model.fix_gauge`.
    `block_size`: samples per block of `normal_equations` (None: `default_block_size()`; 0: one block,
    unblocked).
    `num_samples`: sum(mask) if already known (it is then not recomputed each evaluation).
    `active_length`: samples from this index on are masked out (a prefix mask); `normal_equations` then loops
    over the blocks before it only (module docstring). Needs L a multiple of `block_size` (else ignored).
    """
    lo, hi = model.bounds(gauge)
    lower, unravel = ravel(lo)
    upper, _ = ravel(hi)
    if mask is None:
        mask = jnp.ones_like(y)
    count = jnp.maximum(jnp.sum(mask) if num_samples is None else num_samples, 1.0)
    scale = jnp.sqrt(count)

    def residuals(theta):
        return mask * (y - model(unravel(theta), x)) / scale

    def block_linearise(params, xb, yb, mb):
        f, jac = regression_jacobian(model, params, xb)
        return mb * (yb - f) / scale, -(mb / scale)[:, None] * jac

    def residuals_and_jacobian(theta):
        return block_linearise(unravel(theta), x, y, mask)

    def block_normal(params, xb, yb, mb):
        # One product of the augmented [J r] with itself gives J^T J, J^T r and r.r at once: measured 1.5x faster
        # than J^T J and J^T r apart for one fit (XLA's CPU dot), and no slower batched.
        r, jac = block_linearise(params, xb, yb, mb)
        aug = jnp.concatenate([jac, r[:, None]], axis=1)
        gram = aug.T @ aug
        p = jac.shape[1]
        return gram[p, p], gram[:p, p], gram[:p, :p]

    block_size = default_block_size() if block_size is None else int(block_size)

    def normal_equations(theta):
        if active_length is not None and dynamic_blocks(x.shape[-1], block_size):
            return _active_block_sums(block_normal, unravel(theta), (x, y, mask), block_size, lower.shape[0],
                                      active_length)
        return _blockwise_sums(block_normal, unravel(theta), x, y, mask, block_size, lower.shape[0])

    return LeastSquaresProblem(residuals, lower.astype(y.dtype), upper.astype(y.dtype), residuals_and_jacobian,
                               normal_equations, count), unravel


def _blockwise_sums(block_normal, params, x, y, mask, block_size: int, p: int):
    """`block_normal` (r.r, J^T r, J^T J of a block of samples) summed over blocks of `block_size` samples: a
    `fori_loop` over the whole blocks, then the last, shorter one. One block (`block_size` 0 or >= n): exactly
    the unblocked sums."""
    length = x.shape[-1]
    blocks = length // block_size if block_size > 0 else 0
    if blocks <= 1:
        return block_normal(params, x, y, mask)

    def body(i, acc):
        start = i * block_size
        part = block_normal(params, jax.lax.dynamic_slice_in_dim(x, start, block_size, axis=1),
                            jax.lax.dynamic_slice_in_dim(y, start, block_size),
                            jax.lax.dynamic_slice_in_dim(mask, start, block_size))
        return jax.tree_util.tree_map(jnp.add, acc, part)

    zero = (jnp.zeros((), y.dtype), jnp.zeros((p,), y.dtype), jnp.zeros((p, p), y.dtype))
    acc = jax.lax.fori_loop(0, blocks, body, zero)
    tail = blocks * block_size
    if tail < length:  # the last, shorter block
        acc = jax.tree_util.tree_map(jnp.add, acc, block_normal(params, x[:, tail:], y[tail:], mask[tail:]))
    return acc


def dynamic_blocks(length: int, block_size: int) -> bool:
    """Whether a padded length `length` runs a run-time number of blocks (module docstring): blocks are on and
    `length` is a whole number (>= 2) of them."""
    return block_size > 0 and length % block_size == 0 and length // block_size >= 2


def fine_block_size(block_size: int) -> int:
    """Length of the blocks that cover the rest of n after its whole blocks (a divisor of `block_size`)."""
    return block_size // 8 if block_size % 8 == 0 else block_size


def active_samples(n, block_size: int):
    """Samples the run-time block loop evaluates for a fit of n samples: n rounded up to whole fine blocks."""
    fine = fine_block_size(block_size)
    return -(-n // fine) * fine


def _active_block_sums(block_normal, params, data, block_size: int, p: int, n):
    """`block_normal` summed over the blocks holding the first n samples: n // block_size whole blocks, then
    fine blocks up to n (trip counts are run-time values: `fori_loop` with traced bounds)."""
    x, y, mask = data
    fine = fine_block_size(block_size)

    def add_block(size):
        def body(start, acc):
            part = block_normal(params, jax.lax.dynamic_slice_in_dim(x, start, size, axis=1),
                                jax.lax.dynamic_slice_in_dim(y, start, size),
                                jax.lax.dynamic_slice_in_dim(mask, start, size))
            return jax.tree_util.tree_map(jnp.add, acc, part)
        return body

    zero = (jnp.zeros((), y.dtype), jnp.zeros((p,), y.dtype), jnp.zeros((p, p), y.dtype))
    n = n.astype(jnp.int32)
    whole = n // block_size
    acc = jax.lax.fori_loop(0, whole, lambda i, a: add_block(block_size)(i * block_size, a), zero)
    base = whole * block_size
    rest = -(-(n - base) // fine)
    # The fine blocks stay inside L: base + rest * fine <= whole * block_size + block_size <= L.
    return jax.lax.fori_loop(0, rest, lambda i, a: add_block(fine)(base + i * fine, a), acc)


def projected_gradient_norm(theta, grad, problem: LeastSquaresProblem):
    r"""$\|\theta - P_\Theta(\theta - \nabla)\|_\infty$: zero exactly at a first-order point of the box-constrained
    problem."""
    return jnp.max(jnp.abs(theta - problem.project(theta - grad)))
