"""Background asyncio tasks: held until they end, and ended by cancelling and waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
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


def hold(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    """Run `work` in the background, its task kept in `tasks` until it ends (the loop
    itself keeps only a weak reference: an unheld task may be collected mid-way)."""
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
