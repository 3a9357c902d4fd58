"""The paper's cases (THEORY.md §2-6) with the verdict the theory predicts for each."""

from __future__ import annotations

from typing import NamedTuple

from jaxmoe.validation import require
from jaxmoe.identifiability.independence import IdentifiabilityReport, check_independence


class Case(NamedTuple):
    expert: str
    router: str | None = None
    temperature: bool = False
    hierarchical: bool = False
    expected: str = "independent"
    why: str = ""


PAPER_CASES: dict[str, Case] = {
    "ridge-sigmoid": Case("sigmoid", why="strongly identifiable (Theorem 1)"),
    "ridge-tanh": Case("tanh", why="strongly identifiable (Theorem 1)"),
    "ridge-gelu": Case("gelu", why="strongly identifiable (Theorem 1)"),
    "ridge-relu": Case("relu", expected="dependent",
                       why="not twice differentiable: autodiff's second derivatives in (a, b) are 0 a.e.; "
                           "also relu is positively homogeneous, F = a^T dF/da + b dF/db"),
    "linear": Case("linear", expected="dependent", why="PDE (9) with F affine in (a, b) (Theorem 2)"),
    "polynomial2": Case("polynomial2", expected="dependent", why="h homogeneous of degree 2 in (a, b)"),
    "polynomial3": Case("polynomial3", expected="dependent", why="h homogeneous of degree 3 in (a, b)"),
    "linear-router-temperature": Case("sigmoid", "linear", True, expected="dependent", why="PDE (15), any expert (Theorem 3)"),
    "tanh-router-temperature": Case("sigmoid", "tanh", True, why="algebraically independent (Definition 2, Theorem 4)"),
    "tanh-router-gelu-temperature": Case("gelu", "tanh", True, why="algebraically independent (Definition 2, Theorem 4)"),
    "hierarchical-ridge": Case("sigmoid", hierarchical=True, why="dF/domega = dF/dbeta1 merged as an identity (Theorem 5)"),
    "hierarchical-linear": Case("linear", hierarchical=True, expected="dependent", why="PDEs (28) (Theorem 6)"),
}


def paper_verdicts(names=None, **kwargs) -> dict[str, IdentifiabilityReport]:
    """Run `check_independence` on the named cases (default: all of `PAPER_CASES`)."""
    names = list(PAPER_CASES) if names is None else list(names)
    out = {}
    for name in names:
        c = PAPER_CASES[name]
        out[name] = check_independence(c.expert, c.router, temperature=c.temperature, hierarchical=c.hierarchical, **kwargs)
    return out


def check_model(model, **kwargs) -> IdentifiabilityReport:
    """`check_independence` on the condition a model's family rests on (`model.identifiability_case()`), for its
    expert and router; keyword arguments as `check_independence`'s (d, n_points, seed, ...)."""
    case = model.identifiability_case()
    require(case is not None, "model", type(model).__name__,
            "its family has no identifiability condition in THEORY.md (identifiability_case() is None)")
    return check_independence(model.expert, **case, **kwargs)
