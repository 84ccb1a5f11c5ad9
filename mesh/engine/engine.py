"""The engine's shared state for one process: settings, pools, routing, metrics, connections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Protocol

from mesh import clock
from mesh.config import Settings
from mesh.engine.access_log import AccessLog
from mesh.engine.outbox import Outbox
from mesh.engine.pool import Pools
from mesh.forwarding.directory import Directory
from mesh.forwarding.routing import DefaultRoutes, Routed, Router
from mesh.messages import RequestRecord
from mesh.metrics import Metrics
from mesh.tasks import cancel_and_wait
from mesh.tls import PeerCheck

_SWEEP_EVERY = 1.0
# How often a graceful stop looks for connections that finished (a stop is rare).
_DRAIN_POLL = 0.02


class Connection(Protocol):
    """A client connection as the engine's housekeeping sees it (mesh.engine.server)."""

    @property
    def idle(self) -> bool: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def expire(self, now: float) -> None: ...

    def instances_gone(self, gone: set[tuple[str, int]], silent: Callable[[str], bool]) -> None: ...


class Finished(Protocol):
    """A finished request as taps read it: an exchange (mesh.engine.exchange), or a request
    refused before one began (mesh.engine.refusal)."""

    @property
    def routed(self) -> Routed | None: ...

    @property
    def method(self) -> bytes: ...

    @property
    def target(self) -> bytes: ...

    @property
    def status(self) -> int: ...

    @property
    def engine(self) -> Engine: ...

    def record(self, time: str) -> RequestRecord: ...


class Taps(Protocol):
    """The open taps a finished request is offered to (mesh.observe.tap_source)."""

    def offer(self, exchange: Finished) -> None: ...


class Engine:
    """Everything a client connection needs; one per worker process.

    `strip_mesh_headers` is for the edge: clients there must not speak for the mesh
    (`x-mesh-*`); an agent's outbound proxy serves its own service and keeps them.
    `router` starts as the default routes; the owner swaps in policy routers.
    """

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        metrics: Metrics,
        *,
        strip_mesh_headers: bool,
        rng: random.Random | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.directory = directory
        self.metrics = metrics
        self.strip_mesh_headers = strip_mesh_headers
        self.rng = rng or random.Random()
        self.request_timeout = settings.request_timeout
        self.max_header_bytes = settings.max_header_bytes
        self.max_body_bytes = settings.max_body_bytes
        self.retry_body_bytes = settings.retry_body_bytes
        self.client_idle_timeout = settings.client_idle_timeout
        self.client_header_timeout = settings.client_header_timeout
        self.normalize_path = settings.normalize_path
        # The Date every response carries, formatted once a second by the sweep rather
        # than once per response (RFC 9110 §6.6.1 asks for the best approximation).
        self.date = http_date()
        self.outbox = Outbox(self.loop)
        self.pools = Pools(
            self.outbox,
            max_idle=settings.pool_max_idle,
            idle_timeout=settings.pool_idle_timeout,
        )
        self.connections: set[Connection] = set()
        self.draining = False  # shutting down: every response closes its connection
        self.default_routes = DefaultRoutes(directory.knows)
        self.router: Router = self.default_routes
        self.on_sweep: Callable[[], None] | None = None  # the owner's periodic duties
        # Where the node follows only the services it calls (mesh.membership.discovery):
        # each routed request stamps its service's last call in `used`, and `on_unknown`
        # is given the names of a request that routed nowhere; it returns what to await
        # (following them, bounded) before routing again, or None to answer at once.
        self.used: dict[str, float] | None = None
        self.on_unknown: Callable[[tuple[str, ...]], Coroutine[None, None, None] | None] | None = (
            None
        )
        # With mTLS on: how to dial a service's agents' inbound listeners (None: plain text).
        self.upstream_tls: Callable[[str], PeerCheck] | None = None
        # None when off: the finished request's one check (mesh.engine.exchange).
        self.access_log = AccessLog(settings.access_log) if settings.access_log else None
        # Set only while a tap is open: otherwise the finished request's one check.
        self.taps: Taps | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def start_sweeping(self) -> None:
        """Run `sweep` every second from now until `drain`; once however many listeners."""
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep_every(), name="engine-sweep")

    async def _sweep_every(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            self.sweep()

    async def drain(self, deadline: float) -> int:
        """Let in-flight requests finish for up to `deadline` seconds, once nothing accepts.

        Responses finished meanwhile carry `connection: close` and end their connection;
        idle keep-alive clients are closed at once. Returns how many connections had to
        be cut when the deadline passed.
        """
        self.draining = True
        end = self.loop.time() + deadline
        while True:
            for conn in list(self.connections):
                if conn.idle:
                    conn.close()
            busy = [c for c in self.connections if not c.idle]
            if not busy or self.loop.time() >= end:
                break
            await asyncio.sleep(min(_DRAIN_POLL, max(0.0, end - self.loop.time())))
        for conn in busy:
            conn.abort()
        await cancel_and_wait(self._sweeper)
        self.pools.close()
        if self.access_log is not None:  # every request answered so far is on disk
            self.access_log.flush()
        return len(busy)

    def view_changed(
        self, gone: set[tuple[str, int]], silent: Callable[[str], bool] | None = None
    ) -> None:
        """Close idle connections to instances that are no longer routable; requests still
        waiting on those of them that went silent (`silent(instance)`) are retried
        elsewhere (see Exchange.instances_gone)."""
        for address in gone:
            self.pools.forget(address)
        if gone and silent is not None:  # a membership change: rare enough to look at
            for conn in list(self.connections):  # every client connection
                conn.instances_gone(gone, silent)

    def sweep(self) -> None:
        """Periodic housekeeping: the Date, idle upstream connections, the access log, deadlines."""
        self.date = http_date()
        now = self.loop.time()
        self.pools.expire(now)
        if self.access_log is not None:
            self.access_log.flush()
        if self.on_sweep is not None:
            self.on_sweep()
        for conn in list(self.connections):
            conn.expire(now)


def http_date() -> bytes:
    """A `date` header line for now (RFC 9110 §5.6.7's IMF-fixdate)."""
    return b"date: %s\r\n" % formatdate(clock.wall(), usegmt=True).encode()
