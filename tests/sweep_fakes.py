"""A valid chunk without fitting, for the tests of the sweep folder (store_test, sweep_folder_test): they test
files, locks and reports, not fits, so they compile nothing and take seconds."""

import os

import jax
import numpy as np

from jaxmoe.sweeps import store
from jaxmoe.sweeps.store import FIT_FIELDS


def fake_run_chunk(config, setting, chunk, errors_fn=None):
    """What `runner.run_chunk` returns, with made-up values (depending on the sizes, so chunks differ)."""
    shape = (len(chunk.sizes), config.replicates)
    arrays = {"sizes": np.asarray(chunk.sizes)}
    for name in FIT_FIELDS:
        arrays[name] = np.full(shape, 1.0 / chunk.sizes[0])
    arrays.update(status=np.zeros(shape, np.int32), iterations=np.ones(shape, np.int32),
                  converged=np.ones(shape, bool), reached_minimum=np.zeros(shape, bool),
                  empty_cells=np.zeros(shape, np.int32))
    arrays["metric/l2_error"] = np.outer(np.asarray(chunk.sizes, float) ** -0.5, [1.0, 1.1])
    for path, leaf in jax.tree_util.tree_flatten_with_path(setting.fitted_model().zeros())[0]:
        arrays[store.param_field(path)] = np.zeros(shape + np.shape(leaf))
    info = {"index": chunk.index, "sizes": list(chunk.sizes), "config_hash": config.hash, "seconds": 0.01,
            "compile_seconds": 0.0, "fit_info": {}, "finished_at": store.now(), "pid": os.getpid()}
    return arrays, info


def slow_fake_run_chunk(config, setting, chunk, errors_fn=None):
    """`fake_run_chunk` taking a second (long enough to kill the worker running it); importable by Dask workers."""
    import time

    time.sleep(1.0)
    return fake_run_chunk(config, setting, chunk, errors_fn)
