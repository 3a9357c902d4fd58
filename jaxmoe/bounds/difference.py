r"""$f_G - f_{G_0}$ at the quadrature nodes without the float64 cancellation of the plain difference.

`inverse_bound` needs $\|f_G - f^*\|$ far below $\|f^*\|$: near the truth the atoms of $G$ cancel each other, so
the plain difference of two float64 evaluations (`"direct"`) carries a round-off of about $u\,\|f^*\|$ ($u$ the
unit round-off), the profile's float64 floor. `"path"` writes the same difference as the integral of the
directional derivative along the segment from the split truth $G_0$ to $G$ in the flat parameter vector $\theta$,

$$f_G(x) - f_{G_0}(x) = \int_0^1 \partial_\theta f(\theta_0 + t\Delta, x)\,\Delta\;dt, \qquad
\Delta = \theta_G - \theta_0,$$

by Gauss-Legendre in $t$ (`nodes` points: exact for integrands of degree $\le 2\,$nodes$ - 1$ in $t$). Each
directional derivative (`jax.jvp`) is a sum of terms of size $|\Delta|\,|\partial f|$, so its round-off is about
$u\,|\Delta|\,|\partial f|$: the floor falls with $G$'s distance from $G_0$ instead of staying at $u\|f^*\|$. The
segment stays in $\Theta$ (a box, convex) when both ends do. The $t$-rule's error is measured, not assumed
(`inverse_bound`'s `quadrature_error` compares against twice the nodes in $x$ and in $t$).

What it measures: $f_G - f_{G_0}$, exactly up to that round-off, for $G = G_0 + \Delta$ with the $\Delta$ given
(`segment_difference`; `inverse_bound` gives it the optimiser's offset, so its $G$ is not rounded to float64's
grid around $G_0$, $u\,|\theta_0|$ apart). $f_{G_0} = f^*$ in exact arithmetic only: the
split's logits $\beta^*_0 - \tau \log m$ are rounded, so $f_{G_0}$ is the function of a truth $G^{*\prime}$ whose
logits differ from $G^*$'s by that rounding ($\le u\,|\beta^*_0|$); the profile is then $G^{*\prime}$'s.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

__all__ = ["DIFFERENCES", "PATH_NODES", "path_difference", "segment_difference"]

DIFFERENCES = ("direct", "path")
PATH_NODES = 8  # Gauss-Legendre nodes in t by default


def _rule(nodes: int, dtype):
    t, w = np.polynomial.legendre.leggauss(nodes)
    return jnp.asarray(0.5 * (t + 1.0), dtype), jnp.asarray(0.5 * w, dtype)


def path_difference(model, start, end, x, nodes: int = PATH_NODES, magnitude: bool = False):
    r"""$f_{\text{end}}(x) - f_{\text{start}}(x)$ as the $t$-integral of the directional derivative along the
    straight segment from `start` to `end` (module docstring), `nodes` Gauss-Legendre points. With `magnitude`,
    also $\int_0^1 \sum_j |\partial_{\theta_j} f\,\Delta_j|\,dt$: the size of the per-coordinate terms, which
    cancel each other in the sum (one atom's against another's), so their round-off, not the sum's, sets the floor."""
    a = jax.flatten_util.ravel_pytree(start)[0]
    return segment_difference(model, start, jax.flatten_util.ravel_pytree(end)[0] - a, x, nodes, magnitude)


def segment_difference(model, start, delta, x, nodes: int = PATH_NODES, magnitude: bool = False):
    r"""As `path_difference`, the segment given by `start` and its flat offset $\Delta$ (so that an exact image
    of the segment can be given with the same $\Delta$, not one rounded again at each end)."""
    a, unravel = jax.flatten_util.ravel_pytree(start)
    t, w = _rule(nodes, a.dtype)
    f = lambda p: model(unravel(p), x)  # noqa: E731
    diff = jnp.tensordot(w, jax.vmap(lambda ti: jax.jvp(f, (a + ti * delta,), (delta,))[1])(t), axes=1)
    if not magnitude:
        return diff
    basis = jnp.eye(a.size, dtype=a.dtype) * delta  # row j: Delta_j e_j

    def terms(ti):
        return jnp.sum(jnp.abs(jax.vmap(lambda e: jax.jvp(f, (a + ti * delta,), (e,))[1])(basis)), axis=0)

    return diff, jnp.tensordot(w, jax.vmap(terms)(t), axes=1)
