"""A small progress bar over chunks, on stderr, with an ETA (no dependency: a bar is a dozen lines).

ETA model: a chunk costs its compile time (the mean of the compile times seen so far) plus fitting time
proportional to its work, fits x largest n (the padded length every fit of the chunk runs at), at the
rate seen so far. On a terminal the bar redraws in place; elsewhere (a log file) it prints one line per chunk.
"""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """`Progress(works, done, enabled)`: the work of each chunk to run; `update(seconds, compile_seconds, label)`
    after each chunk."""

    def __init__(self, works: list[float], done: int = 0, enabled: bool = True, stream=None, width: int = 24):
        self.works, self.index, self.enabled = list(works), done, enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.fit_seconds = self.fit_work = self.compile_total = 0.0
        self.compiles = 0
        if enabled and done < len(self.works):
            self._draw("starting")

    def eta(self) -> float | None:
        if not self.compiles:
            return None
        remaining = self.works[self.index:]
        rate = self.fit_seconds / self.fit_work if self.fit_work else 0.0
        return len(remaining) * self.compile_total / self.compiles + rate * sum(remaining)

    def update(self, seconds: float, compile_seconds: float, label: str = "") -> None:
        work = self.works[self.index]
        self.index += 1
        self.compiles += 1
        self.compile_total += compile_seconds
        self.fit_seconds += max(seconds - compile_seconds, 0.0)
        self.fit_work += work
        if self.enabled:
            self._draw(label)

    def _draw(self, label: str) -> None:
        total = len(self.works)
        filled = int(self.width * self.index / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        eta = self.eta()
        text = (f"[{bar}] {self.index}/{total} chunks  elapsed {_clock(time.perf_counter() - self.t0)}"
                f"  ETA {'?' if eta is None else _clock(eta)}  {label}")
        if self.tty:
            self.stream.write("\r" + text.ljust(100)[:100] + ("\n" if self.index == total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
