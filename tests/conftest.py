import jax
import pytest

jax.config.update("jax_platforms", "cpu")


@pytest.fixture(params=[False, True], ids=["float32", "float64"])
def precision(request):
    """Run a test in float32 and again with float64 enabled."""
    with jax.enable_x64(request.param):
        yield request.param
