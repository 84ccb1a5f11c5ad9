"""Reaching the children over loopback: a free port, an HTTP GET, waiting until ready."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable

from bench.console import BenchError
from bench.processes import Processes


def http_get(port: int, path: str, *, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(
    what: str,
    condition: Callable[[], bool],
    *,
    timeout: float,
    processes: Processes | None = None,
) -> None:
    """Poll `condition` until true; a child dying meanwhile fails at once, with its log."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            if condition():
                return
        if processes is not None:
            processes.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
