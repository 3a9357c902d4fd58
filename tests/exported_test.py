"""Chunk programs kept as exported modules across processes (`jaxmoe/estimation/exported.py`)."""

import collections
import functools
import os

import jax
import numpy as np
import pytest

import jaxmoe
from jaxmoe.estimation import curve, exported
from jaxmoe.estimation.exported import exported_path, stable_description
from jaxmoe.estimation.plan import chunk_program_key, plan_curve


def _key(setting, **options):
    plan = plan_curve(setting, [120], 2, 9, jaxmoe.FitOptions().replace(**options))
    return chunk_program_key(plan, plan.buckets[0], jax.sharding.Mesh(np.array(plan.options.devices), ("fits",)))


def _fit(monkeypatch, folder):
    """One small over-fitted curve with no program kept in this process (as a fresh process runs it)."""
    monkeypatch.setattr(curve, "_PROGRAMS", collections.OrderedDict())
    monkeypatch.setattr(exported, "_folder", lambda: folder)
    return jaxmoe.fit_curve(jaxmoe.get_preset("softmax-ridge"), [120, 200], 2, seed=9, k=3, restarts=2)


def test_an_exported_program_fits_the_same_bit_for_bit_and_is_loaded_not_traced(monkeypatch, tmp_path):
    direct = _fit(monkeypatch, None)  # no folder: traced and lowered as always
    cold = _fit(monkeypatch, str(tmp_path))  # traced, exported, written, compiled from the export
    files = list((tmp_path / "jaxmoe-exported").iterdir())
    assert [f.suffix for f in files] == [".jaxexport"]
    stamp = files[0].stat().st_mtime_ns
    monkeypatch.setattr(jax.export, "export", lambda *a, **k: pytest.fail("a warm call traced the program"))
    warm = _fit(monkeypatch, str(tmp_path))  # read back, not traced
    assert files[0].stat().st_mtime_ns == stamp
    for fit in (cold, warm):
        for a, b in zip(jax.tree_util.tree_leaves(direct.params), jax.tree_util.tree_leaves(fit.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for field in ("objective", "status", "iterations"):
            np.testing.assert_array_equal(getattr(fit, field), getattr(direct, field))
        assert fit.info["programs_compiled"] + fit.info["programs_loaded"] == 1  # still one program per curve


def test_an_unreadable_file_is_traced_and_written_again(monkeypatch, tmp_path):
    first = _fit(monkeypatch, str(tmp_path))
    path = next((tmp_path / "jaxmoe-exported").iterdir())
    path.write_bytes(b"half a file")
    again = _fit(monkeypatch, str(tmp_path))
    np.testing.assert_array_equal(again.objective, first.objective)
    assert path.stat().st_size > 1000  # a whole export again


def test_the_key_describes_values_not_identities(monkeypatch, tmp_path):
    monkeypatch.setattr(exported, "_folder", lambda: str(tmp_path))
    ridge = jaxmoe.get_preset("softmax-ridge")
    path = exported_path(_key(ridge))
    assert path is not None and path == exported_path(_key(jaxmoe.get_preset("softmax-ridge")))  # made anew
    assert path != exported_path(_key(ridge.replace(sigma=0.05)))  # another value
    assert path != exported_path(_key(ridge, restarts=3))
    # experts are closures of one factory: told apart by what they close over
    sig, tanh = (stable_description(jaxmoe.get_expert(name)) for name in ("sigmoid", "tanh"))
    assert sig != tanh and sig == stable_description(jaxmoe.get_expert("sigmoid"))
    f32 = np.arange(3.0, dtype=np.float32)
    assert stable_description(f32) == stable_description(jax.numpy.asarray(f32))  # an array by its values
    assert stable_description(f32) != stable_description(f32.astype(np.float64))  # and its dtype
    # a function or class this module wrote has no stable description: its programs are traced, nothing written
    assert exported_path((ridge.sigma, lambda x: x)) is None
    wrapper = functools.wraps(jaxmoe.get_expert)(lambda *a: jaxmoe.get_expert(*a))  # __module__ says jaxmoe
    assert wrapper.__module__.startswith("jaxmoe") and exported_path((wrapper,)) is None
    assert exported_path((collections.namedtuple("Mine", "a")(1.0),)) is None
    assert exported_path((functools.partial(jax.numpy.add, 1.0),)) is not None  # jax's own: by name, pinned
    # every preset's program has one (else a warm process would trace it)
    for name in jaxmoe.PRESET_NAMES:
        assert exported_path(_key(jaxmoe.get_preset(name))) is not None, name
    assert exported_path(None) is None
    monkeypatch.setattr(exported, "_folder", lambda: None)  # the persistent cache off: this one too
    assert exported_path(_key(ridge)) is None
    assert not os.listdir(tmp_path)
