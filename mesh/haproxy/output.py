"""HAProxy's own output: into the gateway's log, prefixed, its recent lines kept for causes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque

from mesh.haproxy.binary import alerts

log = logging.getLogger("mesh.haproxy")

KEPT_LINES = 200
_CANNOT_BIND = re.compile(r"cannot bind socket \(([^)]*)\) (?:for )?\[([^\]]+)\]")


class Output:
    """What one run of HAProxy (master and workers, which share its stdout) says."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.said = 0  # lines said so far, kept or not
        self._ended = asyncio.Event()

    async def follow(self, stream: asyncio.StreamReader) -> None:
        """Log each line, prefixed, until HAProxy's last process closes its output."""
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self._lines.append(line)
            self.said += 1
            log.log(logging.WARNING if "[ALERT]" in line else logging.INFO, "haproxy: %s", line)
        self._ended.set()

    async def ended(self, within: float = 1.0) -> None:
        """Return once HAProxy's output has ended, or `within` seconds have passed: a
        process seen to exit may still have last words in the pipe."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), within)

    def since(self, said: int) -> list[str]:
        """The lines HAProxy said after its `said`-th (as many as are kept)."""
        return list(self._lines)[-(self.said - said) :] if self.said > said else []

    def cause(self, since: int = 0) -> str:
        """The cause HAProxy gave after its `since`-th line, as one line: an address it
        cannot listen on, else its ALERT lines."""
        text = "\n".join(self.since(since))
        if bound := _CANNOT_BIND.search(text):
            return f"cannot listen on {bound[2]}: {bound[1].lower()}"
        return alerts(text) or "(it said nothing)"
