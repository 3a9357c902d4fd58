"""fit_curve shards the fits over all local devices; `use_all_cores` makes each core a device, and a fit's bits
do not depend on how many there are.

JAX fixes the device count when it starts, so each device count is a subprocess that calls
`jaxmoe.use_all_cores()` with `JAXMOE_CPU_DEVICES=N` first (what the CLI does with one device per core). XLA
compiles a sharded program the same way for any N >= 2 (and Eigen's threads are off there): the fits agree bit
for bit across 2 and 4 devices here (3 as well, checked once by hand: a child per count costs ~20 s of suite). The parent process (one device, Eigen threaded) compiles a one-device
program, whose fits agree to round-off (measured: 1e-17 absolute on objectives near 0.01, the same statuses
and iterations); `use_all_cores` never leaves a run on one device for that reason.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxmoe

# Sizes across the 512-sample block, 3 starts: a run-time block loop, and more jobs than queue lanes.
STUDY = dict(sample_sizes=[60, 700], replicates=3, seed=5, restarts=3)

CHILD = r"""
import json, sys
import jax
jax.config.update("jax_platforms", "cpu")
import jaxmoe
set_to = jaxmoe.use_all_cores()
study = json.loads(sys.argv[1])
fit = jaxmoe.fit_curve(jaxmoe.get_preset("softmax-ridge"), **study)  # no device argument: all local devices
print("RESULT" + json.dumps(dict(
    set_to=set_to, devices=jax.local_device_count(), info_devices=fit.info["devices"],
    objective=fit.objective.tolist(), status=fit.status.tolist(), iterations=fit.iterations.tolist(),
    params=[leaf.tolist() for leaf in jax.tree_util.tree_leaves(fit.params)],
    chunk_sizes={str(k): v for k, v in fit.info["chunk_sizes"].items()}, waste_ratio=fit.info["waste_ratio"],
    programs=fit.info["programs_compiled"] + fit.info["programs_loaded"],
    executed=fit.info["executed_sample_iterations"], device_samples=fit.info["buckets"][0]["device_samples"])))
"""


def _child(devices: str) -> dict:
    env = dict(os.environ, JAXMOE_CPU_DEVICES=devices, JAX_PLATFORMS="cpu", JAXMOE_COMPILATION_CACHE="0")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(STUDY)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.fixture(scope="module")
def runs():
    return {n: _child(n) for n in ("2", "4")}


def test_use_all_cores_sets_the_device_count_and_fits_are_sharded_over_them(runs):
    for n, run in runs.items():
        assert run["set_to"] == int(n) and run["devices"] == int(n) and run["info_devices"] == int(n)
        assert run["programs"] == 1  # both sizes, every device: one program
    # 6 fits, one chunk padded to a multiple of 4 devices: the padding (repeats of the cheapest fit) is waste.
    assert runs["4"]["chunk_sizes"] == {"1024": 8}
    per_fit = lambda n: -(-n // 64) * 64  # noqa: E731 -- samples an evaluation costs (fine blocks of 64)
    assert runs["4"]["waste_ratio"] == pytest.approx(
        (5 * per_fit(60) + 3 * per_fit(700)) / (3 * 60 + 3 * 700))


def test_every_device_gets_a_share_of_the_samples(runs):
    # 3 fits at n = 700 and 3 at n = 60: in size order one device got every n = 700 fit (10x the samples).
    for n, run in runs.items():
        shares = run["device_samples"]
        assert len(shares) == int(n) and sum(shares) == run["executed"]
    two = runs["2"]["device_samples"]
    assert max(two) < 3 * min(two), two


def test_fits_are_bit_for_bit_whatever_the_device_count(runs):
    for n in ("4",):
        for field in ("objective", "status", "iterations", "params"):
            assert runs[n][field] == runs["2"][field], (n, field)


def test_one_device_agrees_to_round_off(runs):
    one = jaxmoe.fit_curve(jaxmoe.get_preset("softmax-ridge"), **STUDY)
    assert one.info["devices"] == 1
    np.testing.assert_allclose(np.asarray(runs["2"]["objective"]), one.objective, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.asarray(runs["2"]["status"]), one.status)


def test_use_all_cores_leaves_a_started_jax_alone(monkeypatch):
    jax.numpy.zeros(1).block_until_ready()  # the backend is up in this process
    monkeypatch.delenv("JAXMOE_CPU_DEVICES", raising=False)
    assert jaxmoe.use_all_cores() is None and jax.local_device_count() == 1


@pytest.mark.parametrize("value", ["-1", "two"])
def test_bad_device_count_is_one_line(monkeypatch, value):
    monkeypatch.setenv("JAXMOE_CPU_DEVICES", value)
    with pytest.raises(jaxmoe.JaxMoEInputError, match=f"JAXMOE_CPU_DEVICES='{value}': must be an integer >= 0"):
        jaxmoe.use_all_cores()
