r"""Data: $X \sim \mu$ and $Y = f_{G^*}(X) + \varepsilon$, $\varepsilon \sim N(0, \sigma^2)$, driven only by explicit PRNG keys.

Inputs are laid out `Float[Array, "d n"]` (sample axis last), like every model in jaxmoe.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from jaxmoe.validation import JaxMoEInputError, require, require_positive_int


class UniformInputs(NamedTuple):
    r"""$X \sim \mathrm{Uniform}[\text{low}, \text{high}]^d$ (default: the paper's $[-1, 1]^d$)."""

    low: float = -1.0
    high: float = 1.0

    def sample(self, key: PRNGKeyArray, d: int, n: int) -> Float[Array, "d n"]:
        return jax.random.uniform(key, (d, n), minval=self.low, maxval=self.high)

    def validate(self) -> None:
        require(np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high,
                "inputs", self, "must have finite low < high")


class TruncatedNormalInputs(NamedTuple):
    r"""$X \sim N(0, \text{std}^2 I)$ truncated to $[\text{low}, \text{high}]^d$ (a bounded input law, as the theory needs)."""

    std: float = 0.5
    low: float = -1.0
    high: float = 1.0

    def sample(self, key: PRNGKeyArray, d: int, n: int) -> Float[Array, "d n"]:
        return self.std * jax.random.truncated_normal(key, self.low / self.std, self.high / self.std, (d, n))

    def validate(self) -> None:
        require(np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high,
                "inputs", self, "must have finite low < high")
        require(np.isfinite(self.std) and self.std > 0, "inputs.std", self.std, "must be finite and > 0")


InputLaw = Union[UniformInputs, TruncatedNormalInputs]
INPUT_LAWS = {"uniform": UniformInputs, "truncated_normal": TruncatedNormalInputs}


def get_input_law(name: str, **kwargs) -> InputLaw:
    if name not in INPUT_LAWS:
        raise JaxMoEInputError("inputs", name, f"must be one of {sorted(INPUT_LAWS)}")
    law = INPUT_LAWS[name](**kwargs)
    law.validate()
    return law


def check_sigma(sigma) -> float:
    require(isinstance(sigma, (int, float, np.floating)) and np.isfinite(sigma) and sigma >= 0,
            "sigma", sigma, "noise standard deviation must be finite and >= 0")
    return float(sigma)


def sample_data(
    key: PRNGKeyArray, model, params, n: int, sigma: float, inputs: InputLaw = UniformInputs()
) -> tuple[Float[Array, "d n"], Float[Array, "n"]]:
    r"""Draw $(X, Y)$: n inputs from `inputs` and $Y = f_G(X) + \sigma \varepsilon$.

    The key is split once into an input key and a noise key, so the same key always gives the same sample.
    """
    n = require_positive_int("n", n)
    sigma = check_sigma(sigma)
    key_x, key_eps = jax.random.split(key)
    x = inputs.sample(key_x, model.d, n)
    y = model(params, x) + sigma * jax.random.normal(key_eps, (n,), dtype=x.dtype)
    return x, y
