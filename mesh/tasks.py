"""Ending a background asyncio task: cancel it and wait until it has really ended."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# Python 3.11's wait_for returns its result when cancelled just as its future completes
# (gh-86296), and nats-py waits with it: the task runs on as if never cancelled. A task
# still running this long after a cancel is cancelled again; cleanups take less.
ASK_AGAIN_AFTER = 0.5


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing to do) and return once it has finished.

    Its own cancellation is swallowed, any other exception it ends with is raised. A
    cancellation of the *caller* while it waits still propagates: swallowing every
    CancelledError, as `suppress(CancelledError)` does, would make the caller uncancellable.
    """
    if task is None:
        return
    task.cancel()
    while not (await asyncio.wait({task}, timeout=ASK_AGAIN_AFTER))[0]:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        task.result()
