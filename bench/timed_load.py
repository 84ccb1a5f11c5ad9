"""A bounded request loop that times every answer, for a latency percentile under a run."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.loopback import exchange


@dataclass
class TimedLoad:
    """GETs on `paths` in turn, `rate` a second over one keep-alive connection, until
    stopped, `limit` requests or `seconds` have passed (whichever comes first)."""

    port: int
    paths: Sequence[str]
    rate: float
    limit: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # of the 200 answers, seconds
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        deadline = time.monotonic() + self.seconds
        sent = 0
        while not self._stop.is_set() and sent < self.limit and time.monotonic() < deadline:
            path = self.paths[sent % len(self.paths)]
            sent += 1
            started = time.monotonic()
            error = exchange(conn, path)
            if error is None:
                self.latencies.append(time.monotonic() - started)
            else:
                self.errors.append(error)
            self._stop.wait(max(0.0, started + 1 / self.rate - time.monotonic()))
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
