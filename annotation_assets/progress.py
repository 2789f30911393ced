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
    """Calls `emit` with a one-line report at most every `interval_s` seconds per stage. A
    stage's clock starts at its first report, which callers send with done=0."""

    def __init__(self, emit: Callable[[str], None], *, interval_s: float = 10.0) -> None:
        self.emit = emit
        self.interval_s = interval_s
        self._start: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if stage not in self._start or done == 0:
            self._start[stage] = now
            self._last[stage] = now
            return
        finished = total is not None and done >= total
        if not finished and now - self._last[stage] < self.interval_s:
            return
        self._last[stage] = now
        elapsed = now - self._start[stage]
        line = f"{stage}: {done:,}" + (f"/{total:,}" if total else "") + " records"
        if elapsed > 0.01:
            rate = done / elapsed
            line += f", {rate:,.0f}/s"
            if total and rate > 0 and not finished:
                line += f", ETA {(total - done) / rate:,.0f}s"
        self.emit(line)
        if _console:
            print(line, file=sys.stderr, flush=True)
