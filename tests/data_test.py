"""Data are driven only by explicit keys, have the right law, and the sample axis is last."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxmoe


def test_sample_data_is_a_function_of_the_key(precision):
    s = jaxmoe.get_preset("softmax-ridge")
    key = jax.random.PRNGKey(3)
    x1, y1 = jaxmoe.sample_data(key, s.model, s.truth_params(), 100, 0.1)
    x2, y2 = jaxmoe.sample_data(key, s.model, s.truth_params(), 100, 0.1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = jaxmoe.sample_data(jax.random.PRNGKey(4), s.model, s.truth_params(), 100, 0.1)
    assert not np.allclose(x1, x3)
    assert x1.shape == (1, 100) and y1.shape == (100,)


def test_noise_law_and_input_range():
    s = jaxmoe.get_preset("softmax-ridge")
    with jax.enable_x64(True):
        x, y = jaxmoe.sample_data(jax.random.PRNGKey(0), s.model, s.truth_params(), 200_000, 0.3)
        resid = np.asarray(y - s.model(s.truth_params(), x))
        x = np.asarray(x)
    assert abs(resid.mean()) < 0.005 and abs(resid.std() - 0.3) < 0.005
    assert x.min() >= -1 and x.max() <= 1 and abs(float(x.mean())) < 0.01
    # Uniform[-1, 1]: variance 1/3.
    assert abs(float(x.var()) - 1 / 3) < 0.005
    x0, y0 = jaxmoe.sample_data(jax.random.PRNGKey(0), s.model, s.truth_params(), 50, 0.0)
    np.testing.assert_allclose(y0, s.model(s.truth_params(), x0))


def test_truncated_normal_inputs():
    law = jaxmoe.TruncatedNormalInputs(std=0.5, low=-1.0, high=1.0)
    x = law.sample(jax.random.PRNGKey(1), 2, 100_000)
    assert x.shape == (2, 100_000)
    assert float(jnp.min(x)) >= -1 and float(jnp.max(x)) <= 1
    # Variance of N(0, 0.25) truncated to [-2 sd, 2 sd] is 0.25 * 0.7737 = 0.1934.
    assert abs(float(jnp.var(x)) - 0.1934) < 0.004
