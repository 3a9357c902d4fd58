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


def one_linear_atom_setting(sigma=0.1):
    """k = k* = 1, f = a x + b on U[-1, 1] (the gauge pins the gate): D2r = |da|^r + |db|^r and
    ||f - f*||^2 = da^2/3 + db^2, so omega = eps / 2 for r = 1 and sqrt(eps / 3) for r = 2; F = diag(1/3, 1)."""
    import numpy as np

    from jaxmoe import Setting, SoftmaxMoE, SoftmaxParams
    model = SoftmaxMoE("linear", k=1, d=1)
    truth = SoftmaxParams(np.zeros(1), np.zeros((1, 1)), {"a": np.array([[2.0]]), "b": np.array([1.0])})
    return Setting("one-linear-atom", model, truth, k_fit=1, sigma=sigma)


@pytest.fixture(scope="session")
def one_linear_atom():
    return one_linear_atom_setting


@pytest.fixture(scope="session")
def one_linear_profile():
    """The r = 1 profile of `one_linear_atom_setting()` at 3 eps, 4 starts, 150 iterations (computed once)."""
    import numpy as np

    from jaxmoe.bounds import inverse_bound
    return inverse_bound(one_linear_atom_setting(), loss="d2r", r=1.0, eps=np.array([0.5, 0.1, 0.02]), starts=4,
                         iterations=150)
