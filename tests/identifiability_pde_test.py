"""PDE residuals (eqs. 9, 15, 28) by autodiff in float64: < 1e-10 where they hold, > 1e-3 where they do not."""

import pytest

import jaxmoe
from jaxmoe import identifiability as ident

N = 128


def test_pde9_linear_holds():
    r = ident.pde9_residual("linear", n_points=N)
    assert r.relative < 1e-10 and r.holds


@pytest.mark.parametrize("expert", ["sigmoid", "gelu"])
def test_pde9_is_an_identity_for_every_ridge_expert(expert):
    # dh/da = x dh/db for any h(a^T x + b): eq. (9) does not separate ridge from linear experts.
    assert ident.pde9_residual(expert, n_points=N).relative < 1e-10


def test_homogeneity_separates_linear_from_ridge():
    assert ident.homogeneity_residual("linear", n_points=N).relative < 1e-10
    assert ident.homogeneity_residual("relu", n_points=N).relative < 1e-10
    assert ident.homogeneity_residual("polynomial2", degree=2, n_points=N).relative < 1e-10
    for expert in ("sigmoid", "tanh", "gelu"):
        assert ident.homogeneity_residual(expert, n_points=N).relative > 1e-3, expert


def test_pde15_linear_router_holds_nonlinear_fails():
    assert ident.pde15_residual("linear", n_points=N).relative < 1e-10
    assert ident.pde15_residual("linear", "gelu", n_points=N).relative < 1e-10  # any expert
    assert ident.pde15_residual("tanh", n_points=N).relative > 1e-3


def test_pde28_hierarchical():
    a, b = ident.pde28_residuals("linear", n_points=N)
    assert a.relative < 1e-10 and b.relative < 1e-10
    a, b = ident.pde28_residuals("linear", "tanh", n_points=N)  # non-linear level-2 router breaks both
    assert a.relative > 1e-3 and b.relative > 1e-3


def test_pde_needs_a_b_parameters():
    sine = jaxmoe.Expert("sine", lambda x, eta: eta["w"] * x[0], lambda d: {"w": ()})
    with pytest.raises(jaxmoe.JaxMoEInputError, match="needs the parameter 'a'"):
        ident.pde9_residual(sine, n_points=8)
