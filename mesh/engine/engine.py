"""The engine's shared state for one process: settings, pools, routing, metrics, connections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from mesh.config import Settings
from mesh.engine.outbox import Outbox
from mesh.engine.pool import Pools
from mesh.engine.request import Request
from mesh.engine.server import ClientConnection
from mesh.forwarding.directory import Directory
from mesh.forwarding.routing import Routed, default_route
from mesh.metrics import Metrics

__all__ = ["Engine", "Routed"]

Router = Callable[[Request], Routed]


class Engine:
    """Everything a client connection needs; one per worker process."""

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
        self.connect_timeout = settings.connect_timeout
        self.request_timeout = settings.request_timeout
        self.max_header_bytes = settings.max_header_bytes
        self.max_body_bytes = settings.max_body_bytes
        self.retry_body_bytes = settings.retry_body_bytes
        self.client_idle_timeout = settings.client_idle_timeout
        self.outbox = Outbox(self.loop)
        self.pools = Pools(
            self.outbox,
            max_idle=settings.pool_max_idle,
            idle_timeout=settings.pool_idle_timeout,
        )
        self.connections: set[ClientConnection] = set()
        self.draining = False  # shutting down: every response closes its connection
        self.router: Router = self.default_router
        self.on_sweep: Callable[[], None] | None = None  # the owner's periodic duties

    def default_router(self, request: Request) -> Routed:
        return default_route(request, self.directory.knows)

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def view_changed(self, gone: set[tuple[str, int]]) -> None:
        """Close idle connections to instances that are no longer routable."""
        for address in gone:
            self.pools.forget(address)

    def sweep(self) -> None:
        """Periodic housekeeping: idle upstream connections and idle clients."""
        now = self.loop.time()
        self.pools.expire(now)
        if self.on_sweep is not None:
            self.on_sweep()

        for conn in list(self.connections):
            if conn.idle and now - conn.last_active > self.client_idle_timeout:
                conn.close()
            elif self.max_body_bytes:
                conn.expire_hold(now, self.request_timeout)
