"""Strong identifiability / algebraic independence verdicts (Definitions 1, 2) with their margins and relations."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe import identifiability as ident


@pytest.fixture(scope="module")
def verdicts():
    return ident.paper_verdicts()


@pytest.mark.parametrize("case", list(ident.PAPER_CASES))
def test_paper_verdict(verdicts, case):
    r = verdicts[case]
    assert r.verdict == ident.PAPER_CASES[case].expected
    assert r.margin_decades >= 2.0  # no singular value within 100x of the threshold: not a coin toss
    if r.verdict == "independent":
        assert r.singular_values[-1] > 1e-7 and r.rank == r.n_tested and not r.relations
    else:
        assert r.zero_functions or r.singular_values[-1] < 1e-14


def test_linear_expert_relations(verdicts):
    r = verdicts["linear"]
    assert "1.000 * d2F/dbeta1[0]db@p1 - 1.000 * dF/da[0]@p1 = 0" in [str(i) for i in r.identities]
    assert "d2F/db^2@p1" in r.zero_functions and "d2F/da[0]^2@p1" in r.zero_functions
    a0, a1, b = r.settings["points"][0][2:5]  # parameters: beta1[0], beta1[1], a[0], a[1], b
    euler = r.relations[0]  # F = a^T dF/da + b dF/db, the lowest-order relation
    coef = {name: c for c, name in euler.terms}
    assert set(coef) == {"F@p1", "dF/da[0]@p1", "dF/da[1]@p1", "dF/db@p1"}
    np.testing.assert_allclose([coef["dF/da[0]@p1"], coef["dF/da[1]@p1"], coef["dF/db@p1"]],
                               [-a0 * coef["F@p1"], -a1 * coef["F@p1"], -b * coef["F@p1"]], rtol=1e-6)


def test_ridge_identity_is_merged_not_ignored(verdicts):
    r = verdicts["ridge-sigmoid"]
    assert any("d2F/dbeta1[0]db@p1" in str(i) for i in r.identities)
    listed = ident.check_independence("sigmoid", merge_duplicates=False)
    assert listed.verdict == "dependent"  # as a list (duplicates kept) the family is trivially dependent


def test_relu_zero_second_derivatives(verdicts):
    r = verdicts["ridge-relu"]
    assert len(r.zero_functions) == 12 and any("not twice differentiable" in n for n in r.notes)


def test_temperature_relation_is_pde15(verdicts):
    r = verdicts["linear-router-temperature"]
    first = {name for _, name in r.relations[0].terms}
    assert first == {"dF/dtau@p1", "dF/dbeta1[0]@p1", "dF/dbeta1[1]@p1"}


def test_hierarchical_identity(verdicts):
    assert "1.000 * dF/dbeta1[0]@p1 - 1.000 * dF/domega[0]@p1 = 0" in [str(i) for i in verdicts["hierarchical-ridge"].identities]


def test_user_expert_a_sin_bx():
    sine = jaxmoe.Expert("sine", lambda x, eta: eta["a"] * jnp.sin(eta["b"] * x[0]), lambda d: {"a": (), "b": ()})
    r = ident.check_independence(sine)
    assert r.verdict == "dependent" and "d2F/da^2@p1" in r.zero_functions  # h is linear in a
    a = r.settings["points"][0][r.settings["parameters"].index("a")]
    rel = {name: c for c, name in r.relations[0].terms}
    assert set(rel) == {"F@p1", "dF/da@p1"}
    np.testing.assert_allclose(rel["dF/da@p1"] / rel["F@p1"], -a, rtol=1e-5)  # F = a dF/da (points rounded to 6 decimals)


def test_user_expert_independent():
    bump = jaxmoe.Expert("bump", lambda x, eta: jnp.tanh(eta["a"] @ x + eta["b"] * x[0] ** 2), lambda d: {"a": (d,), "b": ()})
    assert ident.check_independence(bump).verdict == "independent"


def test_bad_inputs():
    E = jaxmoe.JaxMoEInputError
    with pytest.raises(E, match="expert.fn"):
        ident.check_independence(jaxmoe.Expert("bad", lambda x: x[0], lambda d: {"a": ()}))
    with pytest.raises(E, match="float scalar"):
        ident.check_independence(jaxmoe.Expert("vec", lambda x, eta: eta["a"] * x, lambda d: {"a": ()}))
    with pytest.raises(E, match="non-finite"):
        ident.check_independence(jaxmoe.Expert("log", lambda x, eta: jnp.log(eta["a"] * x[0]), lambda d: {"a": ()}))
    with pytest.raises(E, match="no inputs were drawn"):
        ident.check_independence("sigmoid", n_inputs=0)
    with pytest.raises(E, match="must exceed the number of functions"):
        ident.check_independence("sigmoid", n_inputs=10)
    with pytest.raises(E, match="expert"):
        ident.check_independence(lambda x, eta: x[0])
    with pytest.raises(E, match="tol"):
        ident.check_independence("sigmoid", tol=0.0)
