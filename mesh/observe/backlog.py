"""One dashboard stream's backlog: the latest board and a bounded run of events."""

from __future__ import annotations

import asyncio
import collections


class Backlog:
    """What is waiting to be written to one reader; it never grows past `limit` events.

    A newer board replaces one not yet sent (it says all the older one did); events
    past `limit` are refused, for the feed to count. A reader too slow to keep up thus
    costs one board and `limit` events of memory, and holds up nobody.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._board: bytes | None = None
        self._events: collections.deque[bytes] = collections.deque()
        self._ready = asyncio.Event()
        self._ended = False

    def board(self, frame: bytes) -> None:
        self._board = frame
        self._ready.set()

    def event(self, frame: bytes) -> bool:
        """Queue an event frame; False when the backlog is full (the frame is dropped)."""
        if len(self._events) >= self._limit:
            return False
        self._events.append(frame)
        self._ready.set()
        return True

    def end(self) -> None:
        """The feed stops: what is waiting is dropped, next() returns None."""
        self._ended = True
        self._ready.set()

    async def next(self) -> bytes | None:
        """Everything waiting, as one write (board first); None once ended."""
        await self._ready.wait()
        self._ready.clear()
        if self._ended:
            return None
        frames = [self._board] if self._board is not None else []
        frames += self._events
        self._board = None
        self._events.clear()
        return b"".join(frames)
