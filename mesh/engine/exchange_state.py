"""The state one exchange carries, shared by the modules that act on it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mesh import errors
from mesh.balance.balancer import Balancer
from mesh.balance.endpoint import Endpoint
from mesh.engine.failover import Failover
from mesh.engine.request import Request
from mesh.engine.upstream import UpstreamConnection
from mesh.forwarding.service_state import ServiceState
from mesh.resilience.outcome import Outcome

if TYPE_CHECKING:
    from mesh.engine.engine import Engine, Routed
    from mesh.engine.server import ClientConnection


class ExchangeState:
    """Attributes of one exchange (see mesh.engine.exchange), split across three modules:
    exchange (the request's way out), relay (the response's way back), retrying."""

    __slots__ = (
        "_attempt_start",
        "_balancer",
        "_connecting",
        "_key",
        "_try_timer",
        "client",
        "done",
        "endpoint",
        "engine",
        "failover",
        "flags",
        "head",
        "head_only",
        "keep_alive",
        "rechunk",
        "request",
        "request_id",
        "response_started",
        "routed",
        "stale_retry",
        "started",
        "state",
        "status",
        "timer",
        "upstream",
        "upstream_delimited",
    )

    def __init__(self, client: ClientConnection, request: Request, engine: Engine) -> None:
        self.client = client
        self.request = request
        self.engine = engine
        self.head_only = request.method == b"HEAD"
        self.done = False
        self.response_started = False
        self.keep_alive = request.keep_alive and not engine.draining
        self.rechunk = False
        self.upstream_delimited = True
        self.status = 0
        self.flags = "-"
        self.head = b""  # the head as sent upstream, kept to send again on a retry
        self.request_id = b""
        self.stale_retry = False  # a retry on a fresh connection is still possible
        self.routed: Routed | None = None
        self.state: ServiceState | None = None
        self.failover: Failover | None = None
        self.endpoint: Endpoint | None = None
        self._balancer: Balancer | None = None
        self._attempt_start = 0.0
        self._try_timer: asyncio.TimerHandle | None = None
        self._key: bytes | None = None
        self.upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = engine.loop.time()
        self._connecting: asyncio.Task[None] | None = None

    if TYPE_CHECKING:  # defined by the classes that complete an exchange

        def fail(self, error: errors.ProxyError) -> None: ...

        def _attempt(self) -> None: ...

        def _finish(self) -> None: ...

        def _release_upstream(self, *, abort: bool) -> None: ...

        def _observe(self, outcome: Outcome) -> None: ...

        def _end_attempt(self, *, ok: bool) -> None: ...

        def _retry_instead(self, outcome: Outcome) -> bool: ...

        def _attempt_failed(self, outcome: Outcome, error: errors.ProxyError) -> None: ...

        def _located(self, error: errors.ProxyError) -> errors.ProxyError: ...

        def _send_body(self, chunk: bytes) -> None: ...

        async def _open(self, endpoint: Endpoint, timeout: float) -> None: ...
