"""fit_curve and its solvers: recovery, batched == unbatched, determinism, failure flags, bad input."""

import os
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe.estimation.problem import MAX_ITER, NONFINITE

SIZES = [150, 400]


@pytest.fixture(scope="module")
def ridge():
    return jaxmoe.get_preset("softmax-ridge")


def test_recovers_truth_at_large_n_with_tiny_noise(ridge):
    setting = ridge.replace(sigma=1e-3)
    fit = jaxmoe.fit_curve(setting, [3000], 2, seed=1, k=2)
    assert fit.converged.all()
    truth = setting.truth
    for leaf_fit, leaf_true in zip(jax.tree_util.tree_leaves(fit.params), jax.tree_util.tree_leaves(truth)):
        np.testing.assert_allclose(leaf_fit[0], np.broadcast_to(leaf_true, leaf_fit[0].shape), atol=2e-2)
    # The MSE at the minimum is the noise variance, and never above the MSE of the truth.
    np.testing.assert_allclose(fit.objective, 1e-6, rtol=0.1)
    assert np.all(fit.objective <= fit.objective_truth)


def test_batched_equals_unbatched_and_rechunked(ridge):
    batched = jaxmoe.fit_curve(ridge, SIZES, 3, seed=2)
    one_at_a_time = jaxmoe.fit_curve(ridge, SIZES, 3, seed=2, chunk_size=1)
    chunked = jaxmoe.fit_curve(ridge, SIZES, 3, seed=2, chunk_size=2)
    for other in (one_at_a_time, chunked):
        np.testing.assert_allclose(other.objective, batched.objective, rtol=1e-10)
        np.testing.assert_array_equal(other.status, batched.status)
        for a, b in zip(jax.tree_util.tree_leaves(other.params), jax.tree_util.tree_leaves(batched.params)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert batched.objective.shape == (2, 3)
    # Run-time sample counts: a fit of n samples evaluates n rounded up to whole fine blocks (512 / 8 = 64).
    assert one_at_a_time.info["waste_ratio"] == pytest.approx((192 + 448) / (150 + 400))
    assert batched.info["programs_compiled"] + batched.info["programs_loaded"] == 1  # both sizes, one program


def test_same_fit_whatever_the_padded_length(ridge):
    """With run-time sample counts a fit's blocks depend on its n only: the same fit alone or padded to a longer
    curve's length (one program for both sizes), to round-off (measured: objectives within 2e-16 relative; the
    data are drawn in arrays of another shape) and with the same iterations."""
    alone = jaxmoe.fit_curve(ridge, [150], 2, seed=3, k=2, lanes=2)
    curve = jaxmoe.fit_curve(ridge, [150, 5000], 2, seed=3, k=2, lanes=2)
    assert curve.info["chunk_sizes"] == {5120: 4} and alone.info["chunk_sizes"] == {1024: 2}
    np.testing.assert_allclose(curve.objective[0], alone.objective[0], rtol=1e-13)
    np.testing.assert_array_equal(curve.iterations[0], alone.iterations[0])
    for a, b in zip(jax.tree_util.tree_leaves(curve.params), jax.tree_util.tree_leaves(alone.params)):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-8, atol=1e-10)


def test_same_fit_same_data_whatever_the_bucket(ridge):
    """Padding a size into a bigger bucket changes neither its data nor (beyond round-off) its fit (one block:
    sizes bucketed by `bucket_ratio`, as on an accelerator)."""
    alone = jaxmoe.fit_curve(ridge, [150], 2, seed=3, k=2, block_size=0)
    padded = jaxmoe.fit_curve(ridge, [150, 180], 2, seed=3, k=2, bucket_ratio=1.3, block_size=0)
    assert padded.info["waste_ratio"] == pytest.approx((180 * 2 + 180 * 2) / ((150 + 180) * 2))
    np.testing.assert_allclose(padded.objective[0], alone.objective[0], rtol=1e-9)
    np.testing.assert_allclose(padded.objective_truth[0], alone.objective_truth[0], rtol=1e-12)


def test_draw_padded_prefix_property(ridge):
    with jax.enable_x64(True):
        truth = ridge.truth_params()
        key = jax.random.PRNGKey(5)
        x1, y1, m1 = (np.asarray(a) for a in jaxmoe.draw_padded(key, ridge, truth, 50, 50))
        x2, y2, m2 = (np.asarray(a) for a in jaxmoe.draw_padded(key, ridge, truth, 50, 80))
    np.testing.assert_array_equal(x2[:, :50], x1)
    np.testing.assert_array_equal(y2[:50], y1)
    assert float(m2.sum()) == 50 and np.all(np.asarray(y2[50:]) == 0)


def test_bucketing():
    buckets = jaxmoe.bucket_sizes(np.array([100, 110, 124, 126, 200, 1000]), 1.25)
    assert [b.tolist() for b in buckets] == [[100, 110, 124], [126], [200], [1000]]


def test_device_order_balances_the_work_over_devices():
    from jaxmoe.estimation.plan import device_order
    # The 7-size curve's costs in size order: contiguous blocks would give one device all the 10^5 fits.
    costs = [n for n in (100, 316, 1000, 3162, 10000, 31623, 100000) for _ in range(4)]
    order = device_order(costs, 2)
    assert sorted(order) == list(range(len(costs)))
    loads = [sum(costs[i] for i in order[j * 14:(j + 1) * 14]) for j in range(2)]
    assert abs(loads[0] - loads[1]) <= 100000 and max(loads) < 0.55 * sum(costs)
    for j in range(2):  # costliest first within a device
        share = [costs[i] for i in order[j * 14:(j + 1) * 14]]
        assert share == sorted(share, reverse=True)
    assert device_order([5, 1, 3], 1) == [0, 2, 1] and device_order([2, 2, 2, 2], 2) == [0, 2, 1, 3]
    with pytest.raises(jaxmoe.JaxMoEInputError, match="costs=3: must be a multiple of 2"):
        device_order([1, 2, 3], 2)


def test_failures_are_flagged_not_dropped(ridge):
    short = jaxmoe.fit_curve(ridge, [200], 2, seed=0, solver=jaxmoe.get_solver("lm", max_iter=1))
    assert np.all(short.status == MAX_ITER) and not short.converged.any()
    assert short.summary()["status_counts"]["max_iter"] == 2
    assert short.summary()["converged_fraction"] == 0.0

    # An expert that is NaN for x < 0: every fit is non-finite and reported as such.
    bad = jaxmoe.Expert("sqrt", lambda x, eta: jnp.sqrt(x[0]) * eta["a"][0] + eta["b"], lambda d: {"a": (d,), "b": ()})
    model = jaxmoe.SoftmaxMoE(bad, k=2, d=1)
    setting = jaxmoe.Setting("nan", model, model.make_params(
        beta0=[0.0, 0.0], beta1=[[4.0], [0.0]], eta={"a": [[1.0], [2.0]], "b": [0.0, 1.0]}), k_fit=2)
    fit = jaxmoe.fit_curve(setting, [100], 2, seed=0)
    assert np.all(fit.status == NONFINITE) and not fit.converged.any()
    assert fit.objective.shape == (1, 2)


@pytest.mark.parametrize("solver", ["lm", "lbfgs", "adam"])
def test_solvers_reach_the_minimum(ridge, solver):
    """Every solver, started near the truth at k = k*, ends within its tolerance of LM's long refinement."""
    options = {"adam": dict(learning_rate=3e-2, max_iter=3000)}.get(solver, {})
    fit = jaxmoe.fit_curve(ridge, [500], 2, seed=4, k=2, solver=jaxmoe.get_solver(solver, **options),
                           reference=True)
    gap = (fit.objective - fit.objective_reference) / fit.objective_reference
    assert np.all(gap <= {"lm": 1e-9, "lbfgs": 1e-7, "adam": 2e-3}[solver])
    assert np.all(fit.objective <= fit.objective_truth)
    if solver != "adam":
        assert fit.converged.all()
    else:  # Adam creeps: 3000 steps get within 2e-3 but no stopping rule holds, and that is reported.
        assert not fit.converged.any()


def test_random_restarts_keep_the_best(ridge):
    fit = jaxmoe.fit_curve(ridge, [300], 2, seed=6, k=2, init="random", restarts=4)
    single = jaxmoe.fit_curve(ridge, [300], 2, seed=6, k=2, init="random", restarts=1)
    assert np.all(fit.objective <= single.objective * (1 + 1e-12))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sample_sizes=[100, -5]), "sample_sizes"),
        (dict(sample_sizes=[]), "sample_sizes"),
        (dict(sample_sizes=[100, 100]), "must not repeat"),
        (dict(replicates=0), "replicates=0"),
        (dict(solver="newton"), "solver='newton'"),
        (dict(init="kmeans"), "init='kmeans'"),
        (dict(k=1), r"k=1: must be >= k\* = 2"),
        (dict(seed=-1), "seed=-1"),
        (dict(precision="float16"), "precision='float16'"),
        (dict(restarts=0), "restarts=0"),
        (dict(memory_gib=0.0), "memory_gib=0.0"),
        (dict(memory_gib=float("nan")), "memory_gib=nan"),
        (dict(memory_gib="lots"), "memory_gib='lots'"),
        (dict(lanes=0), "lanes=0"),
        (dict(chunk_size=0), "chunk_size=0"),
        (dict(reference_iterations=0), "reference_iterations=0"),
        (dict(block_size=-1), "block_size=-1"),
        (dict(block_size=2.5), "block_size=2.5"),
        (dict(schedule="fastest"), "schedule='fastest'"),
        (dict(init_noise="wide"), "init_noise='wide'"),
        (dict(bucket_ratio=0.5), "bucket_ratio=0.5"),
        (dict(devices=[]), r"devices=\[\]"),
        (dict(bogus=1), "bogus=1: is not a fit_curve option"),
        (dict(options={"restarts": 2}), "options="),
    ],
)
def test_bad_input(ridge, kwargs, match):
    args = dict(sample_sizes=[100], replicates=2)
    args.update(kwargs)
    with pytest.raises(jaxmoe.JaxMoEInputError, match=match):
        jaxmoe.fit_curve(ridge, **args)


def test_gauge_fixing_keeps_f_and_pins_coordinates():
    for name in jaxmoe.PRESET_NAMES:
        setting = jaxmoe.get_preset(name)
        model = setting.fitted_model()
        params = jaxmoe.random_init(jax.random.PRNGKey(0), model)
        x = jnp.linspace(-1, 1, 9)[None]
        np.testing.assert_allclose(model(model.fix_gauge(params), x), model(params, x), rtol=1e-5, atol=1e-6)
        lo, hi = model.bounds(gauge=True)
        flat_lo, flat_hi = jaxmoe.ravel(lo)[0], jaxmoe.ravel(hi)[0]
        pinned = int(np.sum(np.asarray(flat_lo) == np.asarray(flat_hi)))
        if model.family == "hierarchical":  # (kappa, omega) of the last group + (beta0, beta1) of each group's last
            expected = 2 + 2 * model.k1
        elif model.family == "dense_to_sparse" and not model.router.is_linear:
            expected = 1  # only the common shift of beta0 is a symmetry
        else:
            expected = 2
        assert pinned == expected, name


def test_queue_equals_lockstep_fit_for_fit(ridge):
    """The LM work queue (lanes refilled as fits stop) computes the same fits as lockstep vmap."""
    kwargs = dict(sample_sizes=[200], replicates=3, seed=7, restarts=2, reference=True, reference_iterations=200)
    queue = jaxmoe.fit_curve(ridge, **kwargs, schedule="queue", lanes=2)
    lockstep = jaxmoe.fit_curve(ridge, **kwargs, schedule="lockstep")
    assert queue.info["schedule"] == "queue" and lockstep.info["schedule"] == "lockstep"
    np.testing.assert_array_equal(queue.status, lockstep.status)
    np.testing.assert_array_equal(queue.iterations, lockstep.iterations)
    np.testing.assert_allclose(queue.objective, lockstep.objective, rtol=1e-10)
    np.testing.assert_allclose(queue.objective_reference, lockstep.objective_reference, rtol=1e-10)
    with pytest.raises(jaxmoe.JaxMoEInputError, match="'queue' needs the 'lm' solver"):
        jaxmoe.fit_curve(ridge, [100], 2, solver="adam", schedule="queue")


def test_memory_bound_chunks_without_changing_results(ridge):
    """A tiny memory budget forces one fit per chunk; the fits are the same."""
    roomy = jaxmoe.fit_curve(ridge, [300], 4, seed=8, k=2)
    tight = jaxmoe.fit_curve(ridge, [300], 4, seed=8, k=2, memory_gib=1e-5)
    assert roomy.info["chunk_sizes"] == {1024: 4} and tight.info["chunk_sizes"] == {1024: 1}  # 300 -> 2 blocks
    np.testing.assert_allclose(tight.objective, roomy.objective, rtol=1e-10)


def test_device_defaults_per_platform():
    """CPU: 512-sample blocks, 2 lanes per device whatever the core count, 2 GiB; accelerators: one block, 512
    lanes, half their memory."""
    from jaxmoe.estimation import problem

    assert problem.default_block_size("cpu") == problem.CPU_BLOCK_SIZE == 512
    assert problem.default_block_size("gpu") == problem.default_block_size("tpu") == 0
    ridge = jaxmoe.get_preset("softmax-ridge")
    platform = jax.local_devices()[0].platform  # fit_curve's default devices
    assert jaxmoe.FitOptions().validated(ridge).block_size == problem.default_block_size(platform)
    assert jaxmoe.FitOptions(block_size=64).validated(ridge).block_size == 64  # an explicit size wins
    cores = os.cpu_count() or 1
    assert jaxmoe.default_lanes(1, "cpu") == jaxmoe.default_lanes(2 * cores, "cpu") == 2
    assert jaxmoe.default_lanes(1, "gpu") == 512

    class FakeGPU:
        platform = "gpu"

        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            if self.stats is None:
                raise NotImplementedError
            return self.stats

    assert jaxmoe.default_memory_gib(jax.devices("cpu")[0]) == 2.0
    assert jaxmoe.default_memory_gib(FakeGPU({"bytes_limit": 80 * 2**30})) == 40.0
    assert jaxmoe.default_memory_gib(FakeGPU(None)) == 16.0
    # A lane's working set is one block: 8 B x 512 x (p + 6k) x 2 on CPU, 8 B x n x (p + 6k) x 2 = 48 MB with one
    # block at n = 10^5 (p = 12, k = 3), so lanes get half the budget: 1 GiB / 48 MB = 22, 20 GiB / 48 MB = 447.
    cap = jaxmoe.chunk_capacity
    _, width_cpu = cap(100_000, 12, 3, 1, 4, "queue", 512, 2.0, problem.default_block_size("cpu"))
    _, width_gpu = cap(100_000, 12, 3, 1, 4, "queue", 512, 2.0, problem.default_block_size("gpu"))
    _, width_gpu_roomy = cap(100_000, 12, 3, 1, 4, "queue", 512, 40.0, problem.default_block_size("gpu"))
    assert width_cpu == 512 and width_gpu == 22 and width_gpu_roomy == 447


def test_one_block_gives_the_same_fits_as_blocks(ridge):
    """The accelerator default (normal equations from one block) and the CPU default (512-sample blocks) sum the
    same terms in another order: the same fits to round-off. `block_size` is an explicit option (no global)."""
    kwargs = dict(sample_sizes=[1500], replicates=3, seed=4, restarts=2)
    blocked = jaxmoe.fit_curve(ridge, **kwargs)
    whole = jaxmoe.fit_curve(ridge, **kwargs, block_size=0)
    np.testing.assert_array_equal(blocked.status, whole.status)
    np.testing.assert_allclose(whole.objective, blocked.objective, rtol=1e-9)


def test_a_later_call_reuses_the_compiled_program(ridge):
    """A second fit_curve call with the same statics (solver made anew, as get_solver does each time) runs the
    program the first compiled: nothing compiled or loaded, the same fits; another sigma is another program."""
    first = jaxmoe.fit_curve(ridge, [120], 2, seed=9, k=2, solver=jaxmoe.get_solver("lm"))
    again = jaxmoe.fit_curve(ridge, [120], 2, seed=9, k=2, solver=jaxmoe.get_solver("lm"))
    assert again.info["programs_compiled"] == again.info["programs_loaded"] == 0
    np.testing.assert_array_equal(again.objective, first.objective)
    other = jaxmoe.fit_curve(ridge.replace(sigma=0.05), [120], 2, seed=9, k=2)
    assert other.info["programs_compiled"] + other.info["programs_loaded"] == 1
    assert not np.array_equal(other.objective, first.objective)


def test_a_noise_schedule_shrinks_the_start_with_n_and_fits_take_it(ridge):
    """init_noise_decay = a: the start of fit (n, r) is the split truth plus noise * n^-a times the same draw,
    so (start(n) - split) / (start(m) - split) = (n / m)^-a exactly; fit_curve passes it down, and 0 leaves
    the starts as they were (the same fits as without the option)."""
    from jaxmoe.estimation.sampling import fit_starts

    with jax.enable_x64(True):
        model = ridge.fitted_model(3)
        key = jax.random.PRNGKey(5)
        kw = dict(setting=ridge, model=model, init="near_truth", restarts=1, noise=0.005, scale=3.0, decay=0.083)
        (s100, exact), (s1000, _) = fit_starts(key, 100, **kw), fit_starts(key, 1000, **kw)
        d100, d1000 = np.asarray(s100[0] - exact), np.asarray(s1000[0] - exact)
        moved = np.abs(d100) > 1e-12
        assert moved.sum() > 3
        np.testing.assert_allclose(d1000[moved] / d100[moved], 10.0 ** -0.083, rtol=1e-9)
        same = fit_starts(key, 100, **{**kw, "decay": 0.0})[0]
        np.testing.assert_array_equal(same, fit_starts(key, None, **{**kw, "decay": 0.0})[0])
    fits = [jaxmoe.fit_curve(ridge, [100, 120], 2, seed=1, k=3, restarts=1, init_noise=0.005, init_noise_decay=d,
                             padded_length=120) for d in (0.0, 0.083)]
    assert fits[1].info["init_noise_decay"] == 0.083
    assert not np.array_equal(fits[0].objective, fits[1].objective)
    with pytest.raises(jaxmoe.JaxMoEInputError, match="^init_noise_decay=-0.1: must be a finite number >= 0"):
        jaxmoe.FitOptions(init_noise_decay=-0.1)
