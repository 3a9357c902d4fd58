r"""Counting the XLA programs a piece of work builds, from JAX's own monitoring events.

JAX reports every executable it builds (`/jax/core/compile/backend_compile_duration`, also when the program is
loaded from the persistent compilation cache) and every persistent-cache hit (`/jax/compilation_cache/cache_hits`).
`count_programs()` listens to both while it is open: `built - loaded` programs were compiled by XLA, `loaded`
came from the cache. The listeners are process-wide, so a compile started by another thread meanwhile counts
too (fit_curve's own compiles run in its worker threads, which is why a process-wide count is the right one).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from jax import monitoring

__all__ = ["ProgramCount", "count_programs"]

_BUILT = "/jax/core/compile/backend_compile_duration"
_LOADED = "/jax/compilation_cache/cache_hits"


class ProgramCount:
    """Programs built (compiled or loaded) and loaded from the persistent cache while `count_programs` was open."""

    def __init__(self):
        self.built = 0
        self.loaded = 0
        self._lock = threading.Lock()

    @property
    def compiled(self) -> int:
        return self.built - self.loaded

    def _on_duration(self, event: str, duration: float, **kwargs) -> None:
        if event == _BUILT:
            with self._lock:
                self.built += 1

    def _on_event(self, event: str, **kwargs) -> None:
        if event == _LOADED:
            with self._lock:
                self.loaded += 1


@contextlib.contextmanager
def count_programs() -> Iterator[ProgramCount]:
    """`with count_programs() as count: ...`, then `count.compiled`, `count.loaded`, `count.built`."""
    count = ProgramCount()
    monitoring.register_event_duration_secs_listener(count._on_duration)
    monitoring.register_event_listener(count._on_event)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(count._on_duration)
        monitoring.unregister_event_listener(count._on_event)
