"""Throttled progress reports (records done, rate, ETA) for long stages."""

import sys
import time
from collections.abc import Callable

_console = False


def show_on_console(enabled: bool) -> None:
    """Also print progress lines to stderr (the CLI turns this on)."""
    global _console
    _console = enabled


class ProgressReporter:
    """Calls `emit` with a one-line report at most every `interval_s` seconds per stage."""

    def __init__(self, emit: Callable[[str], None], *, interval_s: float = 10.0) -> None:
        self.emit = emit
        self.interval_s = interval_s
        self._created = time.monotonic()
        self._start: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        start = self._start.setdefault(stage, self._created if not self._start else now)
        finished = total is not None and done >= total
        if not finished and now - self._last.get(stage, start) < self.interval_s:
            return
        self._last[stage] = now
        elapsed = max(now - start, 1e-9)
        rate = done / elapsed
        line = f"{stage}: {done:,}" + (f"/{total:,}" if total else "") + f" records, {rate:,.0f}/s"
        if total and rate > 0 and not finished:
            line += f", ETA {(total - done) / rate:,.0f}s"
        self.emit(line)
        if _console:
            print(line, file=sys.stderr, flush=True)
