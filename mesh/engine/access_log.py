"""The JSON access log: one line per finished request, buffered, written in whole lines."""

from __future__ import annotations

import os
import time

import msgspec

from mesh import clock
from mesh.errors import ConfigError
from mesh.messages import RequestRecord

# Lines are held in memory and written in one os.write when the engine sweeps (about once
# a second), when this much is pending, and on stop. One system call per line would block
# the loop on the disk for every request; a BufferedWriter would cut lines at its buffer's
# edge, and gateway workers appending to one file would then interleave half lines. The
# price: a crash (not a graceful stop) loses up to a second of lines.
FLUSH_BYTES = 65536


class Timestamps:
    """Now, in RFC 3339 UTC with milliseconds; the date and time of day formatted once a
    second (formatting each time was 5 us a request, most of what a line costs)."""

    def __init__(self) -> None:
        self._second = -1  # the second whose text is in _date_time
        self._date_time = ""

    def __call__(self) -> str:
        now = clock.wall()
        second = int(now)
        if second != self._second:
            self._second = second
            self._date_time = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._date_time}.{int((now - second) * 1000):03d}Z"


class AccessLog:
    """Appends lines to a file (or stdout for '-'); every write keeps lines whole."""

    def __init__(self, destination: str) -> None:
        self._pending: list[bytes] = []
        self._size = 0
        self._encode = msgspec.json.Encoder().encode
        self.timestamp = Timestamps()
        # Open for the process's life; a path it cannot open stops the process at start.
        if destination == "-":
            self._fd = 1
            return
        try:
            self._fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise ConfigError(f"cannot open MESH_ACCESS_LOG {destination}: {exc.strerror}") from exc

    def write(self, line: RequestRecord) -> None:
        data = self._encode(line) + b"\n"
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        self._size = 0
        while data:
            data = data[os.write(self._fd, data) :]


def request_record(
    time: str,
    node: str,
    *,
    request_id: bytes,
    method: bytes,
    authority: bytes,
    target: bytes,
    status: int,
    flags: str,
    seconds: float,
    bytes_in: int,
    bytes_out: int,
    peer: bytes,
    route: str = "",
    service: str = "",
    instance: str = "",
    attempts: int = 0,
    upstream_seconds: float | None = None,
    consumer: bytes | None = None,
) -> RequestRecord:
    """The record of an answered request, from what the engine holds of it (bytes as
    received, durations in seconds): an exchange's, or a refusal's before one began."""
    return RequestRecord(
        time=time,
        node=node,
        request_id=request_id.decode("latin-1"),
        method=method.decode("latin-1"),
        authority=authority.decode("latin-1"),
        path=path_of(target),
        route=route,
        service=service,
        instance=instance,
        attempts=attempts,
        status=status,
        flags=flags,
        duration_ms=round(seconds * 1000, 3),
        upstream_ms=None if upstream_seconds is None else round(upstream_seconds * 1000, 3),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        consumer=None if consumer is None else consumer.decode("latin-1"),
        peer=peer.decode("latin-1") if peer else None,
    )


def path_of(target: bytes) -> str:
    """The request target without its query: queries may carry secrets (api_key=...)."""
    return target.split(b"?", 1)[0].decode("latin-1")
