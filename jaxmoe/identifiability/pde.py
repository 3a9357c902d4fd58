r"""The PDE interactions of the paper, checked as autodiff residuals at many random $(x, \theta)$ points.

Each check evaluates both sides $L$ and $R$ of a PDE at $N$ random pairs ($x \sim U[-1,1]^d$, parameters
drawn by `family.draw_points`) with `jax.grad`/`jax.hessian`, `jit`-compiled and `vmap`-ped, in float64,
and reports the **relative residual** $\|L - R\|_2 / \max(\|L\|_2, \|R\|_2)$ over all points and components.
A PDE holds when it is at round-off ($< 10^{-10}$); it fails when it is $> 10^{-3}$.

- eq. (9), softmax gating, $F = e^{\beta_1^\top x} h(x; a, b)$: $\partial^2 F / \partial\beta_1\partial b = \partial F/\partial a$.
  **Caution:** this holds for *every* expert of the form $h(a^\top x + b)$ (ridge sigmoid, tanh, GELU
  included), because $\partial h/\partial a = x\, \partial h/\partial b$. What separates the linear expert is
  that, in addition, $F$ is homogeneous of degree 1 in $(a, b)$ ($F = a^\top \partial F/\partial a +
  b\, \partial F/\partial b$, so every second derivative in $(a, b)$ vanishes): `homogeneity_residual`.
- eq. (15), temperature, $u = e^{g(x,\beta_1)/\tau}$: $\partial u/\partial\tau = -\tfrac1\tau \beta_1^\top \partial u/\partial\beta_1$
  (holds for the linear router, fails for a non-linear one).
- eq. (28), hierarchical, $F = e^{\omega^\top x} e^{\beta_1^\top x} h$: $\partial F/\partial\omega = \partial F/\partial\beta_1$
  (every expert) and the level-2 analogue of (9).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoe.validation import JaxMoEInputError, require_positive_int
from jaxmoe.identifiability.family import Family, build_family, draw_inputs, draw_points

HOLDS_BELOW = 1e-10
FAILS_ABOVE = 1e-3


class PDEResidual(NamedTuple):
    """Relative residual of one PDE for one case; `holds` is `relative < 1e-10`."""

    equation: str  # e.g. "(9)"
    statement: str
    case: str
    relative: float
    max_abs: float
    n_points: int

    @property
    def holds(self) -> bool:
        return self.relative < HOLDS_BELOW

    def __str__(self) -> str:
        return f"{self.equation:<6} {self.case:<28} {self.relative:9.2e}  {'holds' if self.holds else 'fails'}  {self.statement}"


def _idx(fam: Family, group: str, key: str | None = None) -> np.ndarray:
    for seg in fam.segments:
        if seg.group == group and seg.key == key:
            return np.arange(seg.start, seg.start + seg.size)
    raise JaxMoEInputError(
        "parameters", list(fam.param_names), f"this PDE needs the parameter {key or group!r} (expert with 'a' of shape (d,) and scalar 'b')"
    )


def _derivatives(fam: Family, n_points: int, seed: int):
    """value, gradient, Hessian of F at n_points paired random (x, theta), float64 (caller enables x64)."""
    n_points = require_positive_int("n_points", n_points)
    key = jax.random.PRNGKey(seed)
    xs = draw_inputs(key, fam.d, n_points)
    thetas = draw_points(fam, jax.random.fold_in(key, 1), n_points)

    def one(x, th):
        return fam.F(x, th), jax.grad(fam.F, argnums=1)(x, th), jax.hessian(fam.F, argnums=1)(x, th)

    val, grad, hess = jax.jit(jax.vmap(one))(xs, thetas)
    out = tuple(np.asarray(a, dtype=np.float64) for a in (val, grad, hess))
    if not all(np.isfinite(a).all() for a in out):
        raise JaxMoEInputError("F", fam.expert.name, "non-finite values or derivatives at the random points drawn")
    return out + (np.asarray(thetas, dtype=np.float64),)


def _residual(equation, statement, case, lhs, rhs) -> PDEResidual:
    lhs, rhs = np.asarray(lhs).ravel(), np.asarray(rhs).ravel()
    scale = max(np.linalg.norm(lhs), np.linalg.norm(rhs))
    if not scale > 0:
        raise JaxMoEInputError("pde", case, "both sides vanish at every point drawn: nothing to compare")
    r = lhs - rhs
    return PDEResidual(equation, statement, case, float(np.linalg.norm(r) / scale), float(np.max(np.abs(r))), lhs.size)


def pde9_residual(expert: Any = "linear", *, d: int = 2, n_points: int = 512, seed: int = 0) -> PDEResidual:
    r"""eq. (9): $\partial^2 F/\partial\beta_1\partial b - \partial F/\partial a = 0$ for $F = e^{\beta_1^\top x} h(x; a, b)$."""
    with jax.enable_x64(True):
        fam = build_family(expert, d=d)
        ia, ib, ibeta = _idx(fam, "eta", "a"), _idx(fam, "eta", "b"), _idx(fam, "beta1")
        _, g, H, _ = _derivatives(fam, n_points, seed)
    return _residual("(9)", "d2F/dbeta1 db = dF/da", f"softmax, {fam.expert.name} expert", H[:, ibeta, ib[0]], g[:, ia])


def homogeneity_residual(expert: Any = "linear", *, degree: int = 1, d: int = 2, n_points: int = 512, seed: int = 0) -> PDEResidual:
    r"""Companion of (9): $\text{degree}\cdot F = a^\top \partial F/\partial a + b\,\partial F/\partial b$ ($h$ homogeneous in
    $(a, b)$). Holds for linear (degree 1), ReLU (degree 1) and polynomial-$p$ (degree $p$) experts, fails for
    sigmoid, tanh, GELU: it is the relation that makes the linear family dependent beyond PDE (9)."""
    with jax.enable_x64(True):
        fam = build_family(expert, d=d)
        ia, ib = _idx(fam, "eta", "a"), _idx(fam, "eta", "b")
        val, g, _, th = _derivatives(fam, n_points, seed)
        rhs = np.sum(th[:, ia] * g[:, ia], axis=1) + th[:, ib[0]] * g[:, ib[0]]
    return _residual("homog", f"{degree} F = a.dF/da + b dF/db", f"softmax, {fam.expert.name} expert", degree * val, rhs)


def pde15_residual(router: Any = "linear", expert: Any = "sigmoid", *, d: int = 2, n_points: int = 512, seed: int = 0) -> PDEResidual:
    r"""eq. (15): $\partial F/\partial\tau + \tfrac1\tau \beta_1^\top \partial F/\partial\beta_1 = 0$ for
    $F = e^{g(x,\beta_1)/\tau} h(x,\eta)$ (any expert; holds iff $g/\tau$ is homogeneous of degree 0)."""
    with jax.enable_x64(True):
        fam = build_family(expert, router, temperature=True, d=d)
        ibeta, itau = _idx_group(fam, "beta1"), _idx(fam, "tau")
        _, g, _, th = _derivatives(fam, n_points, seed)
        rhs = -np.sum(th[:, ibeta] * g[:, ibeta], axis=1) / th[:, itau[0]]
    return _residual("(15)", "dF/dtau = -(1/tau) beta1.dF/dbeta1", f"{fam.router.name} router, tau", g[:, itau[0]], rhs)


def _idx_group(fam: Family, group: str) -> np.ndarray:
    return np.concatenate([np.arange(s.start, s.start + s.size) for s in fam.segments if s.group == group])


def pde28_residuals(expert: Any = "linear", router: Any = None, *, d: int = 2, n_points: int = 512, seed: int = 0) -> tuple[PDEResidual, PDEResidual]:
    r"""eq. (28), $F = e^{\omega^\top x} e^{g(x,\beta_1)} h(x; a, b)$ ($g$ linear by default):
    (28a) $\partial F/\partial\omega = \partial F/\partial\beta_1$ and (28b) $\partial^2F/\partial\beta_1\partial b = \partial F/\partial a$."""
    with jax.enable_x64(True):
        fam = build_family(expert, router, hierarchical=True, d=d)
        iom, ibeta = _idx(fam, "omega"), _idx_group(fam, "beta1")
        _, g, H, _ = _derivatives(fam, n_points, seed)
        case = f"hier., {fam.router.name} lvl-2, {fam.expert.name}"
        if len(ibeta) != len(iom):
            raise JaxMoEInputError("router", fam.router.name, f"eq. (28) needs a level-2 router with beta1 of shape ({d},)")
        a = _residual("(28a)", "dF/domega = dF/dbeta1", case, g[:, iom], g[:, ibeta])
        ia, ib = _idx(fam, "eta", "a"), _idx(fam, "eta", "b")
        b = _residual("(28b)", "d2F/dbeta1 db = dF/da", case, H[:, ibeta, ib[0]], g[:, ia])
    return a, b


def pde_table(*, d: int = 2, n_points: int = 512, seed: int = 0) -> tuple[PDEResidual, ...]:
    """Every PDE check of the paper's cases and of their strongly identifiable contrasts."""
    rows: list[PDEResidual] = []
    for e in ("linear", "sigmoid", "tanh", "gelu"):
        rows.append(pde9_residual(e, d=d, n_points=n_points, seed=seed))
    for e, p in (("linear", 1), ("relu", 1), ("polynomial2", 2), ("sigmoid", 1), ("tanh", 1), ("gelu", 1)):
        rows.append(homogeneity_residual(e, degree=p, d=d, n_points=n_points, seed=seed))
    for r in ("linear", "tanh", "sigmoid", "mlp-tanh"):
        rows.append(pde15_residual(r, d=d, n_points=n_points, seed=seed))
    for e, r in (("linear", None), ("sigmoid", None), ("linear", "tanh")):
        rows.extend(pde28_residuals(e, r, d=d, n_points=n_points, seed=seed))
    return tuple(rows)


def format_pde_table(rows) -> str:
    head = f"{'eq.':<6} {'case':<28} {'rel. res.':>9}  verdict  statement"
    return "\n".join([head] + [str(r) for r in rows])
