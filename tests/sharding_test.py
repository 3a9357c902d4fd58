"""fit_curve shards the fits over all local devices: same fits on 4 (forced host) CPU devices as on 1.

JAX fixes the device count when it starts, so the 4-device runs are a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`; the parent process (1 device) fits the same study.
With the same queue width per device the fits agree bit for bit; with the default width (2 lanes per core
shared among the devices: 1 per device there, 4 on one device) a lane's arithmetic is compiled for another
batch shape, and fits agree to round-off (measured: objectives within 1e-12 relative, the same statuses).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import jaxmoe

STUDY = dict(sample_sizes=[60, 70], replicates=3, seed=5, restarts=1)  # one bucket: one compiled shape

CHILD = r"""
import json, sys
import jax
jax.config.update("jax_platforms", "cpu")
import jaxmoe
study = json.loads(sys.argv[1])
setting = jaxmoe.get_preset("softmax-ridge")
out = {"devices": jax.local_device_count()}
for name, lanes in [("default", None), ("two_lanes", 2)]:
    fit = jaxmoe.fit_curve(setting, **study, lanes=lanes)  # no device argument: all local devices
    out[name] = dict(objective=fit.objective.tolist(), status=fit.status.tolist(),
                     iterations=fit.iterations.tolist(), devices=fit.info["devices"],
                     chunk_sizes={str(k): v for k, v in fit.info["chunk_sizes"].items()},
                     waste_ratio=fit.info["waste_ratio"])
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(STUDY)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_fits_are_sharded_over_all_local_devices_by_default(four_devices):
    assert four_devices["devices"] == 4
    assert four_devices["default"]["devices"] == 4
    # 6 fits in one bucket, padded to a multiple of 4 devices: the padding is counted as waste.
    assert four_devices["default"]["chunk_sizes"] == {"70": 8}
    assert four_devices["default"]["waste_ratio"] == pytest.approx(8 * 70 / (3 * 60 + 3 * 70))


def test_four_devices_give_the_same_fits_as_one(four_devices):
    one_device = jaxmoe.fit_curve(jaxmoe.get_preset("softmax-ridge"), **STUDY, lanes=2)
    assert one_device.info["devices"] == 1
    same_width = four_devices["two_lanes"]  # 2 lanes per device: bit for bit
    np.testing.assert_array_equal(np.asarray(same_width["objective"]), one_device.objective)
    np.testing.assert_array_equal(np.asarray(same_width["iterations"]), one_device.iterations)
    np.testing.assert_array_equal(np.asarray(same_width["status"]), one_device.status)
    default = four_devices["default"]  # the user's call, unchanged: round-off
    np.testing.assert_allclose(np.asarray(default["objective"]), one_device.objective, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(np.asarray(default["status"]), one_device.status)
