"""The only module that reads the clock; pure modules take `now` as an argument instead."""

from __future__ import annotations

import time


def monotonic() -> float:
    """Seconds on a clock that never jumps: every deadline and expiry uses this."""
    return time.monotonic()


def wall() -> float:
    """Seconds since the epoch: only for timestamps shown to people or stored in events."""
    return time.time()


def unique_seed() -> int:
    """A value that differs between process starts (incarnations, instance ids)."""
    return time.time_ns()
