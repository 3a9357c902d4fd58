"""Model families: one module per family, each owning its model, gauge, box, Jacobian, starts, cells, losses,
theory rates and config entries (`jaxmoe.families.base` lists the protocol). Adding a family is one module
plus one line in `FAMILIES`.

- `softmax`: softmax gating (eq. 2; Theorems 1, 2);
- `dense_to_sparse`: softmax gating with a temperature and a linear or non-linear router (eq. 12, 17; Theorems 3, 4);
- `hierarchical`: two-level softmax gating (eq. 20; Theorems 5, 6);
- `sigmoid`: sigmoid gating (no rates in THEORY.md).
"""

from __future__ import annotations

from typing import Any

from jaxmoe.validation import require
from jaxmoe.models.user import is_user_spec, load_object
from jaxmoe.families.base import MoEFamily, ParameterBox
from jaxmoe.families.cells import ExpertSupErrors, ParameterErrors, VoronoiCells
from jaxmoe.families.dense_to_sparse import DenseToSparseMoE, DenseToSparseParams
from jaxmoe.families.hierarchical import HierarchicalCells, HierarchicalMoE, HierarchicalParameterErrors, HierarchicalParams
from jaxmoe.families.sigmoid import SigmoidGatingMoE, SigmoidParams
from jaxmoe.families.softmax import SoftmaxMoE, SoftmaxParams

__all__ = [
    "FAMILIES", "MODEL_FAMILIES", "get_family", "family_of", "regression_function", "regression_jacobian",
    "MoEFamily", "ParameterBox", "SoftmaxMoE", "SoftmaxParams", "DenseToSparseMoE", "DenseToSparseParams",
    "HierarchicalMoE", "HierarchicalParams", "HierarchicalCells", "HierarchicalParameterErrors",
    "SigmoidGatingMoE", "SigmoidParams", "VoronoiCells", "ParameterErrors", "ExpertSupErrors",
]

# The registry: config name -> family class.
FAMILIES: dict[str, type[MoEFamily]] = {
    cls.name: cls for cls in (SoftmaxMoE, DenseToSparseMoE, HierarchicalMoE, SigmoidGatingMoE)
}
MODEL_FAMILIES = tuple(FAMILIES)
_BY_PARAMS = {cls.params_type: cls for cls in FAMILIES.values()}


def get_family(name: str, field: str = "model.family") -> type[MoEFamily]:
    """The family class registered under `name` (a key of `FAMILIES`), or a user's `"package.module:Class"`: a
    subclass of `MoEFamily` implementing its protocol (`jaxmoe.families.base`)."""
    if is_user_spec(name):
        cls = load_object(name, field)
        require(isinstance(cls, type) and issubclass(cls, MoEFamily) and cls.params_type is not tuple, field, name,
                "must be a subclass of jaxmoe.families.MoEFamily with its params_type and protocol methods")
        return cls
    require(isinstance(name, str) and name in FAMILIES, field, name,
            f"must be one of {list(FAMILIES)} or 'package.module:Class' (a MoEFamily subclass)")
    return FAMILIES[name]


def family_of(params: Any, field: str = "truth") -> type[MoEFamily]:
    """The family whose parameter NamedTuple `params` is."""
    cls = _BY_PARAMS.get(type(params))
    require(cls is not None, field, type(params).__name__,
            f"must be one of {[c.params_type.__name__ for c in FAMILIES.values()]}")
    return cls


def regression_function(model, params, x):
    """$f_G(x)$: the same as `model(params, x)`."""
    return model(params, x)


def regression_jacobian(model, params, x):
    """$f_G(x)$ and its Jacobian in the flat parameters (columns in `ravel_pytree(params)` order): the family's
    structured one, or forward-mode autodiff for any other callable model."""
    if isinstance(model, MoEFamily):
        return model.jacobian(params, x)
    return MoEFamily.jacobian(model, params, x)
