"""Models: experts, gates/routers and the three MoE families."""

from jaxmoe.models.experts import ACTIVATIONS, EXPERT_NAMES, Expert, ffn, get_activation, get_expert, linear, polynomial, ridge
from jaxmoe.models.gates import (
    ROUTER_NAMES,
    Router,
    activation_router,
    dense_to_sparse_gate,
    gated_sum,
    get_router,
    linear_router,
    mlp_router,
    softmax_gate,
)
from jaxmoe.models.moe import (
    MODEL_FAMILIES,
    DenseToSparseMoE,
    DenseToSparseParams,
    HierarchicalMoE,
    HierarchicalParams,
    ParameterBox,
    SoftmaxMoE,
    SoftmaxParams,
    regression_function,
)
