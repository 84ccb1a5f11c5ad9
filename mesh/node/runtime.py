"""Process plumbing for mesh commands: event loop choice and stop signals."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable, Coroutine
from typing import Any

GEN0 = 10_000  # container allocations between young collections (CPython: 700)


def run(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run `main(stop)` on uvloop where available; SIGTERM and SIGINT set `stop`."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run

    async def wrapper() -> int:
        # What the imports built lives as long as the process: out of the cyclic
        # collector's walks. And young objects are collected every GEN0 allocations, not
        # every 700: a view filling with 10,000 members (a new gateway's first second)
        # allocates millions of containers, and spent some 15% of it in collections.
        gc.collect()  # the imports' garbage is not kept for good
        gc.freeze()
        gc.set_threshold(GEN0, *gc.get_threshold()[1:])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return runner(wrapper())
