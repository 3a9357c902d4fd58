"""Metrics of every fit of a `CurveFit`, as arrays indexed [size, replicate]."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxmoe.losses.errors import regression_l2_error, regression_l2_error_quadrature
from jaxmoe.losses.voronoi import batched_loss
from jaxmoe.models.moe import DenseToSparseParams, HierarchicalParams, SoftmaxParams


@functools.lru_cache(maxsize=64)
def _l2_fn(model_hat, model_true, inputs, points: int | None):
    """The jitted per-fit L2 error, built once per (models, input law) instead of on every call (2-4 s each)."""
    if points is None:
        return jax.jit(jax.vmap(lambda p, truth: regression_l2_error_quadrature(
            model_hat, p, model_true, truth, inputs), in_axes=(0, None)))
    # lax.map in batches: a vmap over every fit would hold fits x points values at once
    return jax.jit(lambda ps, truth, key: jax.lax.map(lambda p: regression_l2_error(
        key, model_hat, p, model_true, truth, inputs, points), ps, batch_size=8))


def curve_metrics(setting, fit, *, l2_key=None, l2_points: int = 100_000) -> dict[str, np.ndarray]:
    r"""Per-fit metrics of a rate curve, in float64: `l2_error` ($\|f_{\hat G} - f_{G^*}\|_{L^2(\mu)}$, by
    quadrature for d = 1, else by Monte Carlo on `l2_points` fresh inputs drawn from `l2_key`, the same
    points for every fit) and the family's Voronoi loss (`voronoi_d1`, `voronoi_d4` for a non-linear router,
    `voronoi_temperature` (eq. 16, r = 1) for a linear router with temperature, `voronoi_hierarchical`)."""
    shape = fit.objective.shape
    with jax.enable_x64(True):
        truth = setting.truth_params()
        flat = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((-1,) + a.shape[2:]), fit.params)
        model_hat = setting.fitted_model(fit.info["k"])
        metrics = {}
        if setting.d == 1:
            l2 = _l2_fn(model_hat, setting.model, setting.inputs, None)(flat, truth)
        else:
            key = jax.random.PRNGKey(0) if l2_key is None else l2_key
            l2 = _l2_fn(model_hat, setting.model, setting.inputs, int(l2_points))(flat, truth, key)
        metrics["l2_error"] = np.asarray(l2).reshape(shape)
        if isinstance(truth, SoftmaxParams):
            metrics["voronoi_d1"] = np.asarray(batched_loss("d1", flat, truth)).reshape(shape)
        elif isinstance(truth, DenseToSparseParams):
            if setting.model.router.is_linear:
                metrics["voronoi_temperature"] = np.asarray(batched_loss("temperature", flat, truth)).reshape(shape)
            else:
                metrics["voronoi_d4"] = np.asarray(batched_loss("d4", flat, truth)).reshape(shape)
        elif isinstance(truth, HierarchicalParams):
            metrics["voronoi_hierarchical"] = np.asarray(batched_loss("hierarchical", flat, truth)).reshape(shape)
    return metrics
