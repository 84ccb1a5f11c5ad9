"""Waiting inside an event loop for what the shells' background tasks do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    """Let the loop run until `condition()` holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.002)


async def settle(rounds: int = 20) -> None:
    """Let every task that is ready run (a few passes of the loop, no waiting on time)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
