r"""Users' own experts, routers and families, named `"package.module:name"` wherever a registry name is allowed
(sweep configs, every CLI command, `get_expert`, `get_router`, `get_family`).

**Where it looks.** The module is imported with the working directory first on `sys.path` (a console script
does not put it there), then the usual path; an import that fails is one line naming the module and the
folders searched.

**The protocol** (checked when loaded, each failure one line `field=value: what is allowed`):

- an **expert** is a `jaxmoe.Expert(name, fn, param_shapes)` (or a function of no arguments returning one):
  `param_shapes(d)` returns a non-empty dict `{name: shape}` of tuples of positive ints, and `fn(x, eta)` with
  `x: Float[Array, "d"]` and `eta` a dict of arrays of those shapes returns a float scalar;
- a **router** is a `jaxmoe.Router(name, fn, param_shapes, is_linear)` (or a function returning one):
  `param_shapes(d)` is a shape tuple or a dict of them, `fn(x, beta1)` a float scalar; `is_linear=True` only if
  $g(x, \beta_1)$ is linear in $\beta_1$ (the gauge and losses then translate $\beta_1$);
- a **family** is a subclass of `jaxmoe.families.MoEFamily` implementing its protocol (that module's table).

**Reproducibility.** `source_hash(spec)` is a hash of the module's file, which a sweep config stores (and so
hashes): `--resume` after editing the model's source is refused, naming the change.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from typing import Any

from jaxmoe.validation import JaxMoEInputError, require

__all__ = ["is_user_spec", "load_object", "load_instance", "source_hash"]


def is_user_spec(value: Any) -> bool:
    """True for a `"package.module:name"` string."""
    return isinstance(value, str) and ":" in value


def _split(spec: str, field: str) -> tuple[str, str]:
    module, _, attr = spec.partition(":")
    ok = module and attr and all(part.isidentifier() for part in module.split(".")) and attr.isidentifier()
    require(bool(ok), field, spec, "must be 'package.module:name' (a Python module path, a colon, an attribute)")
    return module, attr


def _import(module: str, spec: str, field: str):
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # what `python -c` does, and users expect from a console script
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            raise JaxMoEInputError(field, spec, f"no module {err.name!r} in the working directory {cwd} or on "
                                   "sys.path (run from its folder, or add that folder to PYTHONPATH)") from None
        raise JaxMoEInputError(field, spec, f"importing module {module!r} failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - user code
        raise JaxMoEInputError(field, spec, f"importing module {module!r} raised {type(err).__name__}: {err}") from None


def load_object(spec: str, field: str):
    """The attribute `name` of module `package.module` for `spec = "package.module:name"`."""
    module_name, attr = _split(spec, field)
    module = _import(module_name, spec, field)
    require(hasattr(module, attr), field, spec,
            f"module {module_name!r} ({getattr(module, '__file__', '?')}) has no attribute {attr!r}")
    return getattr(module, attr)


def load_instance(spec: str, field: str, cls: type, what: str):
    """`load_object`, then a `cls` instance: the object itself, or what it returns when called with no arguments."""
    obj = load_object(spec, field)
    if not isinstance(obj, cls) and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except Exception as err:  # noqa: BLE001 - user code
            raise JaxMoEInputError(field, spec, f"calling it with no arguments raised {type(err).__name__}: {err}") from None
    require(isinstance(obj, cls), field, spec, f"must be a jaxmoe.{cls.__name__} (or a function returning one): "
            f"{what}; got {type(obj).__name__}")
    return obj


def source_hash(spec: str, field: str = "model") -> str:
    """sha256 (16 hex digits) of the source file of `spec`'s module."""
    module_name, _ = _split(spec, field)
    module = _import(module_name, spec, field)
    path = getattr(module, "__file__", None)
    require(path is not None and os.path.isfile(path), field, spec, "its module has no source file to hash")
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]
