"""The only module that reads the clock; pure modules take `now` as an argument instead."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where a shell reads the time: this module itself, or a test's manual clock."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


def monotonic() -> float:
    """Seconds on a clock that never jumps: every deadline and expiry uses this."""
    return time.monotonic()


# How long a request or an attempt took: a clock with sub-microsecond steps, where the
# loop's (uvloop's) steps by the millisecond; timers and deadlines stay on the loop's.
# The function itself, not a wrapper around it: it is read twice per request.
stopwatch = time.perf_counter


def wall() -> float:
    """Seconds since the epoch: only for timestamps shown to people or stored in events."""
    return time.time()
