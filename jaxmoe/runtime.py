r"""Process-wide JAX settings jaxmoe turns on: the persistent compilation cache and one CPU device per core.

**Compilation cache** (`enable_compilation_cache`, called when jaxmoe is imported). A curve's fits are one XLA
program (`estimation.plan`), compiled in seconds; JAX's persistent cache keeps compiled programs on disk, so
a later process (a resumed sweep, a notebook restarted, the next CLI call) loads them instead. jaxmoe turns it
on in `$JAXMOE_CACHE_DIR`, else `$XDG_CACHE_HOME/jaxmoe/xla`, else `~/.cache/jaxmoe/xla`, unless the process has
chosen a cache folder already (`jax_compilation_cache_dir` set) or `JAXMOE_COMPILATION_CACHE=0` (or `off`,
`false`). The cache stores compiled code: results are the same with or without it. The chunk programs of
`fit_curve` are also kept there, exported (`jaxmoe/estimation/exported.py`), so that a later process does not
trace them again; off with the cache.

**One device per core** (`use_all_cores`, called by the CLI before JAX starts; a library user calls it first
thing, before any JAX computation). XLA runs a CPU program on one core; `fit_curve` shards its fits over the
local devices, so making each core a device uses all of them (`jax_num_cpu_devices`). At least 2 devices
even on one core, and Eigen's intra-op threads off (each device is already a thread): XLA compiles a
sharded program the same way for any device count >= 2 but a one-device one differently, and a
multi-threaded Eigen splits reductions by its thread count, so this is what makes a fit's bits independent of
the machine's core count (tests/sharding_test.py). `JAXMOE_CPU_DEVICES=N` chooses N (`0`: leave JAX's
default); a device count the process set itself (`jax_num_cpu_devices`, or `XLA_FLAGS` with
`--xla_force_host_platform_device_count`) is kept.
"""

from __future__ import annotations

import os

import jax

from jaxmoe.validation import JaxMoEInputError

__all__ = ["cache_folder", "enable_compilation_cache", "use_all_cores"]

_OFF = ("0", "off", "false", "no")
_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_EIGEN_FLAG = "--xla_cpu_multi_thread_eigen"
# Cache programs that took at least this long to compile (JAX's default, 1 s, leaves out the report's metric
# programs, which a warm `jaxmoe sweep` would otherwise compile again).
_MIN_COMPILE_SECONDS = 0.2


def cache_folder() -> str:
    """Where jaxmoe puts JAX's persistent compilation cache (module docstring)."""
    if os.environ.get("JAXMOE_CACHE_DIR"):
        return os.environ["JAXMOE_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxmoe", "xla")


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache in `cache_folder()` unless the process chose one already or
    `JAXMOE_COMPILATION_CACHE` is off; returns the folder in use (None: no cache)."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if os.environ.get("JAXMOE_COMPILATION_CACHE", "1").strip().lower() in _OFF:
        return None
    folder = cache_folder()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # a read-only home: run without a cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    return folder


def _requested_devices() -> int | None:
    """Devices per `JAXMOE_CPU_DEVICES` (None: one per core, at least 2; 0: JAX's default)."""
    text = os.environ.get("JAXMOE_CPU_DEVICES")
    if text is None or not text.strip():
        return max(2, os.cpu_count() or 1)
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise JaxMoEInputError("JAXMOE_CPU_DEVICES", text, "must be an integer >= 0 (0: JAX's default)")
    return count or None


def use_all_cores() -> int | None:
    """Make each CPU core a JAX device (module docstring), before JAX starts its CPU backend. Returns the
    device count set, or None where it was left alone (set by the process, `JAXMOE_CPU_DEVICES=0`, or JAX
    already started: then it is too late, and fits run on the devices there are)."""
    count = _requested_devices()
    flags = os.environ.get("XLA_FLAGS", "")
    if count is None or _DEVICE_FLAG in flags or jax.config.jax_num_cpu_devices != -1:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend is up: the device count is fixed for this process
        return None
    if _EIGEN_FLAG not in flags:  # read when the CPU backend starts, which has not happened yet
        os.environ["XLA_FLAGS"] = f"{flags} {_EIGEN_FLAG}=false".strip()
    return count
