"""Metrics of every fit of a `CurveFit`, as arrays indexed [size, replicate]: `curve_metrics` (L2 error and the
family's Voronoi loss) and `fit_metrics` (those plus the parameter errors a sweep stores)."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxmoe.losses.errors import parameter_errors, regression_l2_error, regression_l2_error_quadrature
from jaxmoe.losses.voronoi import batched_loss


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
    points for every fit) and the family's Voronoi loss(es), `model.curve_losses()`: `voronoi_d1` (softmax),
    `voronoi_temperature` (eq. 16, r = 1; linear router with temperature), `voronoi_d4` (non-linear router),
    `voronoi_hierarchical`, `voronoi_sigmoid`."""
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
        for name, loss in model_hat.curve_losses().items():
            metrics[name] = np.asarray(batched_loss(loss, flat, truth)).reshape(shape)
    return metrics


def parameter_errors_fn(setting):
    """`parameter_errors` of a batch of fits against the truth, jitted once per setting (a sweep reuses it
    for every chunk of the same shape instead of compiling it again)."""
    kwargs = setting.model.loss_options
    with jax.enable_x64(True):
        truth = setting.truth_params()
    return jax.jit(jax.vmap(lambda p: parameter_errors(p, truth, **kwargs)))


def fit_metrics(setting, fit, errors_fn=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    r"""Per-fit metrics, arrays [size, replicate]: `curve_metrics` (L2 error, the family's Voronoi loss) plus
    the parameter errors of `parameter_errors`, read separately so each rate shows on its own:
    `exact_error` (cells with one fitted atom; theory $n^{-1/2}$), `overfit_error` (cells with several;
    $n^{-1/4}$; only when k > k*), `level1_error` (hierarchical groups; $n^{-1/2}$). Also returns the
    number of empty Voronoi cells per fit (a failed fit has some; its parameter errors are then NaN).
    `errors_fn`: `parameter_errors_fn(setting)`, to reuse across calls."""
    shape = fit.objective.shape
    metrics = dict(curve_metrics(setting, fit))
    errors_fn = errors_fn or parameter_errors_fn(setting)
    with jax.enable_x64(True):
        flat = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64).reshape((-1,) + a.shape[2:]), fit.params)
        errors = jax.tree_util.tree_map(np.asarray, errors_fn(flat))
    model_hat = setting.fitted_model(fit.info["k"])
    metrics.update({name: np.asarray(value).reshape(shape)
                    for name, value in model_hat.error_metrics(errors, setting.k_star).items()})
    empty = model_hat.empty_cells(errors)
    return metrics, np.asarray(empty).reshape(shape)
