"""Ending a background asyncio task: cancel it and wait until it has really ended."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing to do) and return once it has finished.

    Its own cancellation is swallowed, any other exception it ends with is raised. A
    cancellation of the *caller* while it waits still propagates: swallowing every
    CancelledError, as `suppress(CancelledError)` does, would make the caller uncancellable.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
