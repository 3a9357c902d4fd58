r"""Chunk programs kept across processes as exported StableHLO (`jax.export`), so a warm process skips tracing.

**Why.** JAX's persistent compilation cache (`jaxmoe/runtime.py`) keeps compiled XLA executables, but a process
must still trace and lower a program before it can look its executable up. For softmax-ridge's chunk program
that is 1.35 s of tracing and 1.33 s of lowering on one core, against 0.6 s to load the executable
(measured in one process, `JAX_LOG_COMPILES=1 jaxmoe sweep --preset softmax-ridge --sizes 500,1000
--replicates 4`): most of a warm CLI call's fitting time. Here a chunk program is exported once (traced and
lowered, as before), written to the cache folder, and later processes deserialize it and compile it, which the
persistent cache answers. The exported module is the program itself: the fits are the same bit for bit.

**The key.** A file is named by a SHA-256 over a *stable description* of everything the program is a function of
(`chunk_program_key`: the setting with its truth's values, the model, solver, starts, chunk shape, devices,
precision), the source of every module of the `jaxmoe` package, the jax, jaxlib, numpy, optax and Python
versions and JAX's scalar configuration. The description is built only from values whose meaning cannot change
without changing it: numbers, strings, arrays (their bytes), tuples, dicts, and NamedTuples, dataclasses and
plain objects of jaxmoe's classes or those libraries' (their fields), and functions whose code lives in
jaxmoe, jax, jaxlib, numpy or optax (name, code and, for a closure, the values it closes over). Anything else,
e.g. a function a user wrote in a notebook, has no stable description: its program is traced as before and
nothing is written. A file that cannot be read (another version, a partial copy) is traced and written again.
tests/exported_test.py checks that a loaded program fits the same bit for bit and is not traced.

**Off** with the persistent cache (`JAXMOE_COMPILATION_CACHE=0`) or without `flatbuffers` (JAX's serialisation
format). Files live in `<jax_compilation_cache_dir>/jaxmoe-exported/`, written atomically.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import os
import pickle
import sys
import tempfile
import types

import jax
import jax.scipy.special
import numpy as np

__all__ = ["exported_lowering", "exported_path", "stable_description"]

_FOLDER = "jaxmoe-exported"
_TRUSTED = ("jaxmoe", "jax", "jaxlib", "numpy", "optax")


class _Unstable(Exception):
    """A value with no stable description (module docstring)."""


def _package_folders() -> tuple:
    import jaxlib
    import optax
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (own,) + tuple(os.path.dirname(os.path.abspath(m.__file__)) for m in (jax, jaxlib, np, optax))


_FOLDERS = _package_folders()
_NAMESPACES = (jax.numpy, jax.nn, jax.lax, jax.scipy.special, np)


def _trusted(module) -> bool:
    return isinstance(module, str) and module.split(".")[0] in _TRUSTED


def _describe_function(fn) -> tuple:
    """A Python function by its code, where that code lives in a trusted package (its file, not its `__module__`,
    which `functools.wraps` copies), and what it closes over; a jitted function by what it wraps; a compiled
    function of a pinned library by its name."""
    code = getattr(fn, "__code__", None)
    if isinstance(fn, types.FunctionType):
        if not os.path.abspath(code.co_filename).startswith(_FOLDERS):
            raise _Unstable(fn)
        cells = tuple(c.cell_contents for c in fn.__closure__ or ())
        return ("fn", fn.__module__, fn.__qualname__, code.co_firstlineno, hashlib.sha256(code.co_code).hexdigest(),
                stable_description(cells), stable_description(fn.__defaults__),
                stable_description(fn.__kwdefaults__))
    if not _trusted(type(fn).__module__) or not _trusted(getattr(fn, "__module__", None)):
        raise _Unstable(fn)
    if hasattr(fn, "__wrapped__"):  # jax.jit's wrapper: what it wraps
        return ("wrapped", type(fn).__qualname__, stable_description(fn.__wrapped__))
    if fn.__module__.split(".")[0] == "jaxmoe":
        raise _Unstable(fn)
    return ("compiled", fn.__module__, getattr(fn, "__qualname__", repr(fn)))  # a ufunc, a builtin of jaxlib


def _describe_object(obj) -> tuple:
    """A NamedTuple, dataclass or plain object of a trusted package's class (its code is pinned by the key) by
    its fields."""
    t = type(obj)
    if not _trusted(t.__module__):
        raise _Unstable(obj)
    name = (t.__module__, t.__qualname__)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return ("namedtuple", name, stable_description(tuple(obj)))
    if dataclasses.is_dataclass(obj):
        return ("dataclass", name, stable_description({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}))
    if t.__module__.split(".")[0] == "jaxmoe" and hasattr(obj, "__dict__") and not hasattr(obj, "__slots__"):
        return ("object", name, stable_description(vars(obj)))
    for module in _NAMESPACES:  # a library's own named object (jnp.add, a jax.numpy.ufunc), not one built from it
        if getattr(module, getattr(obj, "__name__", ""), None) is obj:
            return ("library", module.__name__, obj.__name__)
    raise _Unstable(obj)


def stable_description(obj):
    """A nested tuple of plain values that describes `obj` for the key (module docstring); raises if it has none."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return (type(obj).__name__, repr(obj))
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        a = np.asarray(obj)
        return ("array", a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())
    if isinstance(obj, type):
        if not _trusted(obj.__module__) and obj.__module__ != "builtins":
            raise _Unstable(obj)
        return ("type", obj.__module__, obj.__qualname__)
    if isinstance(obj, functools.partial):
        return ("partial", stable_description(obj.func), stable_description(obj.args),
                stable_description(obj.keywords))
    if isinstance(obj, types.MethodType):
        return ("method", stable_description(obj.__self__), _describe_function(obj.__func__))
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, np.ufunc)) or (
            callable(obj) and hasattr(obj, "__wrapped__")):
        return _describe_function(obj)
    if isinstance(obj, enum.Enum):
        return ("enum", stable_description(type(obj)), obj.name)
    if isinstance(obj, dict):
        items = [(stable_description(k), stable_description(v)) for k, v in obj.items()]
        return ("dict", tuple(sorted(items, key=repr)))
    if type(obj) in (tuple, list):
        return (type(obj).__name__, tuple(stable_description(x) for x in obj))
    if isinstance(obj, (frozenset, set)):
        return ("set", tuple(sorted((stable_description(x) for x in obj), key=repr)))
    return _describe_object(obj)


def _environment() -> str:
    """The jaxmoe source (as it was when this module was imported: the code that runs) and the jax, jaxlib, numpy,
    optax and Python versions, hashed."""
    import jaxlib
    import optax
    h = hashlib.sha256()
    root = _FOLDERS[0]  # the jaxmoe package
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    h.update(f"{jax.__version__} {jaxlib.__version__} {np.__version__} {optax.__version__} {sys.version}".encode())
    return h.hexdigest()


_ENVIRONMENT = _environment()


def _config() -> str:
    """JAX's scalar flags now (x64 is thread-local, so read per call)."""
    values = jax.config.values
    return repr(sorted((k, v) for k, v in values.items() if isinstance(v, (bool, int, float, str, type(None)))))


def _folder() -> str | None:
    """The persistent compilation cache's folder (None: the cache is off, and so is this one)."""
    return jax.config.jax_compilation_cache_dir or None


def exported_path(key) -> str | None:
    """The file of a program key, or None where there is no cache folder or `key` has no stable description."""
    folder = _folder()
    if not folder or key is None:
        return None
    try:
        described = stable_description(key)
    except (_Unstable, RecursionError):  # RecursionError: an object that refers to itself
        return None
    digest = hashlib.sha256(repr((described, _ENVIRONMENT, _config(), jax.config.jax_enable_x64)).encode())
    return os.path.join(folder, _FOLDER, digest.hexdigest() + ".jaxexport")


def _write(path: str, blob: bytes) -> None:
    """`blob` at `path`, complete or absent (a temporary file renamed); a failure is not an error (no cache)."""
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


class _Unflatten:
    """A compiled program of flat outputs called as the original: the outputs rebuilt into its tree."""

    def __init__(self, compiled, treedef):
        self.compiled, self.treedef = compiled, treedef

    def __call__(self, *args):
        return jax.tree_util.tree_unflatten(self.treedef, self.compiled(*args))


def _read(path: str):
    try:
        with open(path, "rb") as fh:
            treedef, blob = pickle.load(fh)
        return treedef, jax.export.deserialize(blob)
    except Exception:  # noqa: BLE001 - any unreadable file (another version, a partial copy) is traced again
        return None


def _export(fn, args, path: str):
    """Trace and export `fn` for `args` with flat outputs, write it to `path`: (output tree, exported)."""
    tree = []

    def flat(*a):
        out = fn(*a)
        tree.append(jax.tree_util.tree_structure(out))
        return jax.tree_util.tree_leaves(out)
    exported = jax.export.export(jax.jit(flat))(*args)
    try:
        _write(path, pickle.dumps((tree[0], exported.serialize())))
    except ImportError:  # no flatbuffers: use the export, keep nothing
        pass
    return tree[0], exported


def exported_lowering(key, fn, *args):
    """`fn` (a jitted function) compiled for `args`: from its exported module in the cache folder when one is
    there for `key` (a `chunk_program_key`), else traced, exported and written there first; `fn.lower(*args)`
    compiled as before where the key has no stable description or there is no cache."""
    path = exported_path(key)
    if path is None:
        return fn.lower(*args).compile()
    found = _read(path) if os.path.exists(path) else None
    if found is not None:
        treedef, exported = found
        try:
            return _Unflatten(jax.jit(exported.call).lower(*args).compile(), treedef)
        except Exception:  # noqa: BLE001 - a file that does not fit these arguments: export it again
            pass
    treedef, exported = _export(fn, args, path)
    return _Unflatten(jax.jit(exported.call).lower(*args).compile(), treedef)
