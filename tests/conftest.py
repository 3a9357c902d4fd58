import tempfile

import jax
import pytest

jax.config.update("jax_platforms", "cpu")
# One persistent XLA cache for this test process: the many small fits of the suite compile the same programs
# again and again (fit_curve builds its jitted functions per call); a cache hit loads the compiled program
# instead (the cache stores compiled code, so results are unchanged). Subprocess tests choose their own.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jaxmoe-tests-xla-cache-"))


@pytest.fixture(params=[False, True], ids=["float32", "float64"])
def precision(request):
    """Run a test in float32 and again with float64 enabled."""
    with jax.enable_x64(request.param):
        yield request.param
