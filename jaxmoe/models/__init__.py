"""Models' building blocks: experts $h(x, \\eta)$ and routers $g(x, \\beta_1)$ with gates. The model families
built from them live in `jaxmoe.families`."""

from jaxmoe.models.experts import (
    ACTIVATIONS,
    EXPERT_NAMES,
    Expert,
    expert_key,
    ffn,
    get_activation,
    get_expert,
    linear,
    polynomial,
    ridge,
)
from jaxmoe.models.gates import (
    ROUTER_NAMES,
    Router,
    activation_router,
    dense_to_sparse_gate,
    gated_sum,
    get_router,
    linear_router,
    mlp_router,
    router_key,
    softmax_gate,
)

__all__ = [
    "ACTIVATIONS", "EXPERT_NAMES", "Expert", "expert_key", "ffn", "get_activation", "get_expert", "linear",
    "polynomial", "ridge", "ROUTER_NAMES", "Router", "activation_router", "dense_to_sparse_gate", "gated_sum",
    "get_router", "linear_router", "mlp_router", "router_key", "softmax_gate",
]
