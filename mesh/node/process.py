"""Child processes that cannot outlive the mesh process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_DEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec hook making Linux SIGTERM the child when the thread that started it exits.

    PR_SET_DEATHSIG follows the creating *thread*: start children from the main thread or
    the event loop's thread. Elsewhere than Linux this returns None (no hook).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: no dlopen after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_DEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook
