"""Proof that HAProxy serves a revision: its probe port answers that revision's tag."""

from __future__ import annotations

import asyncio
import contextlib

from mesh import clock

# Between probes while a reload is under way: its new worker answers within milliseconds.
_AGAIN = 0.01


async def serving(probe: tuple[str, int], revision: str, within: float) -> bool:
    """Whether a request to `probe` is answered with `revision` within `within` seconds."""
    give_up = clock.monotonic() + within
    while True:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            if await asyncio.wait_for(_answer(probe), timeout=1.0) == revision:
                return True
        if clock.monotonic() >= give_up:
            return False
        await asyncio.sleep(_AGAIN)


async def _answer(probe: tuple[str, int]) -> str:
    """The body of `GET /` on a fresh connection (a reload's new worker takes new ones)."""
    reader, writer = await asyncio.open_connection(*probe)
    try:
        writer.write(b"GET / HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return body.decode("latin-1") if head.startswith(b"HTTP/1.1 200") else ""
