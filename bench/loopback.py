"""Reaching the children over loopback: a free port, an HTTP GET, waiting until ready."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable, Mapping

from bench.console import BenchError
from bench.processes import Processes
from mesh.config import load
from mesh.node.admin import credentials


def http_get(
    port: int, path: str, *, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def exchange(conn: http.client.HTTPConnection, path: str) -> str | None:
    """One GET on a kept-alive connection: None for a 200, else what went wrong (the
    status and the mesh's flags, or the exception's name); the connection is closed when
    it cannot be reused."""
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.will_close:
            conn.close()
        if response.status == 200:
            return None
        return f"{response.status} {response.getheader('x-mesh-flags')}"
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return type(exc).__name__


def admin_get(port: int, path: str, *, timeout: float = 2.0) -> tuple[int, bytes]:
    """A GET on a mesh admin port, with MESH_ADMIN_TOKEN when set: the children have it."""
    return http_get(port, path, timeout=timeout, headers=credentials(load().admin_token))


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
