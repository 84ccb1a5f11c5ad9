"""glibc heap tuning for forwarding processes: keep freed memory rather than trim it each time."""

from __future__ import annotations

import ctypes
import os

# mallopt parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2

# Every relayed body is a short-lived allocation as large as one read (64 KiB and more).
# With glibc's defaults the heap top goes back to the kernel once 128 KiB of it are free
# and is grown again for the next response: a brk call and freshly zeroed pages per
# response, about 30% of the proxy's CPU at 64 KiB x 128 connections (bench.proxy:
# 10.1k -> 15.0k req/s). The price is RSS: up to TRIM_THRESHOLD of freed heap stays with
# the process, and the heap grows in TOP_PAD steps.
TRIM_THRESHOLD = 8 * 1024 * 1024
TOP_PAD = 4 * 1024 * 1024

# Set by a user who tunes malloc themselves: theirs wins.
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_heap() -> bool:
    """Apply the settings above on glibc unless the user tuned malloc; True if applied."""
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # no mallopt: an allocator (macOS) with its own policy
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # musl's mallopt accepts nothing and returns 0, which is reported as not applied.
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_TOP_PAD, TOP_PAD))
