"""Input validation: one error type for bad input, with one message format (field, value, what is allowed), and
the `require` helpers every module checks its arguments with."""

from __future__ import annotations

from typing import Any

import numpy as np


class JaxMoEInputError(ValueError):
    """Bad input to jaxmoe. The message names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}={_short(value)}: {allowed}")


def _short(value: Any) -> str:
    # A long value keeps its head and its tail: a path's last folder (and the closing quote) is what names it.
    text = repr(value)
    return text if len(text) <= 80 else text[:38] + "..." + text[-39:]


def require(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise `JaxMoEInputError(field, value, allowed)` unless `ok`."""
    if not ok:
        raise JaxMoEInputError(field, value, allowed)


def require_positive_int(field: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int, if it is a (Python or NumPy) integer >= `minimum` (booleans are not)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) >= minimum
    require(ok, field, value, f"must be an integer >= {minimum}")
    return int(value)
