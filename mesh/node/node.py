"""What every mesh process runs: the NATS bus, the view, its own heartbeat, events, admin."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable, Iterable

import msgspec
from aiohttp import web

from mesh import subjects
from mesh.addresses import bind, hostport
from mesh.bus import NatsBus
from mesh.bus.events import EventLog
from mesh.config import Settings
from mesh.errors import BusError, BusRefused
from mesh.membership.announcer import Announcer, new_incarnation
from mesh.membership.connection_names import connection_name
from mesh.membership.coverage import CoverageWatch
from mesh.membership.discovery import Discovery
from mesh.membership.presence import Presence
from mesh.membership.view import View
from mesh.messages import Heartbeat
from mesh.metrics import Metrics, registry_for
from mesh.node import admin
from mesh.node.ports import binding
from mesh.observe.feed import Feed

log = logging.getLogger(__name__)

# How long a starting node waits for NATS to take its first heartbeat (or refuse it).
_HEARD_WITHIN = 2.0


def follows_everything(settings: Settings, role: str) -> bool:
    """A gateway whose default routes reach any service by name hears them all; agents,
    and gateways set to follow their routes, hear the services they call or preload."""
    any_name = settings.gateway_services == "all" and settings.gateway_default_routes
    return role == "gateway" and any_name


class Node:
    """Gateway and agent both build on this; it owns no forwarding and no health checks."""

    def __init__(self, settings: Settings, record: Heartbeat) -> None:
        self.settings = settings
        self.name = record.instance
        self.service = record.service
        self.role = record.role
        # Chosen before the bus: its connection name carries it, so that the server's
        # word that this connection closed names this incarnation and no other.
        incarnation = new_incarnation()
        named = msgspec.structs.replace(record, incarnation=incarnation)
        self.bus = NatsBus(settings, name=connection_name(named))
        self.metrics = Metrics()
        self.registry = registry_for(self.metrics)
        own = record.service if settings.events_scope == "own" else None
        self.events = EventLog(self.bus, record.instance, self.metrics, own=own)
        self.discovery = Discovery(
            self.bus,
            settings.timing,
            node=record.instance,
            metrics=self.metrics,
            events=self.events,
            everything=follows_everything(settings, record.role),
            idle=settings.interest_idle,
        )
        self.announcer = Announcer(
            self.bus,
            record,
            incarnation=incarnation,
            full_every=settings.heartbeat_full_every,
            count_invalid=self.metrics.invalid_message,
        )
        # Slow beats while a presence watcher times our silence for everyone.
        self.coverage = CoverageWatch(
            self.bus, settings.timing, count_invalid=self.metrics.invalid_message
        )
        self.coverage.on_change(self._paced)
        self.presence = (
            Presence(settings, self.bus, node=record.instance, metrics=self.metrics)
            if settings.presence
            else None
        )
        self._admin_socket: socket.socket | None = None
        self._admin: web.AppRunner | None = None
        self._dashboard: Feed | None = None
        # The forwarding path's state for /mesh/upstreams, when this node has one.
        self.upstreams: Callable[[], object] | None = None

        self.metrics.gauge(
            "mesh_members",
            "Members in this node's view.",
            ("service", "state"),
            self._member_counts,
        )
        self.metrics.gauge(
            "mesh_bus_connected", "1 while connected to NATS.", (), self._bus_connected
        )
        self.admin_refused = 0
        self.metrics.counter(
            "mesh_admin_refused",
            "Admin requests refused for a missing or wrong MESH_ADMIN_TOKEN.",
            (),
            lambda: [((), float(self.admin_refused))],
        )

    def _paced(self, covered: bool) -> None:
        slow = self.settings.heartbeat_covered_interval
        self.announcer.update(interval=self.coverage.interval(slow))

    @property
    def view(self) -> View:
        return self.discovery.view

    def _member_counts(self) -> Iterable[tuple[tuple[str, ...], float]]:
        counts = collections.Counter(
            (m.record.service, m.state.value) for m in self.view.members.values()
        )
        return [((service, state), float(n)) for (service, state), n in counts.items()]

    def _bus_connected(self) -> Iterable[tuple[tuple[str, ...], float]]:
        return [((), 1.0 if self.bus.connected else 0.0)]

    def _refused(self) -> None:
        self.admin_refused += 1

    async def start(self) -> None:
        """Start talking to NATS in the background; a missing NATS delays nothing here.

        Credentials NATS refuses, or that may not announce this node (another service's,
        another role's), end the start with BusRefused: such a node would only half-run.
        """
        await self.bus.start()
        self.events.start()
        await self.discovery.start()
        if self.presence is not None:
            await self.presence.start()
        await self.coverage.start()
        await self.announcer.start()
        if self.bus.connected:
            await self._check_announced()

    async def _check_announced(self) -> None:
        record = self.announcer.record
        subject = subjects.heartbeat(record.service, record.instance)
        try:
            await asyncio.wait_for(self.bus.unless_refused(subject, self._heard()), _HEARD_WITHIN)
        except BusRefused as exc:
            raise BusRefused(
                f"{exc}: these credentials may not announce {record.service} "
                "(another service's or role's?)"
            ) from None
        except (BusError, TimeoutError):
            pass  # NATS went away meanwhile: the announcer keeps at it

    async def _heard(self) -> None:
        """Until NATS took our first heartbeat; the server answers a flush only after
        refusing whatever came before it."""
        await self.announcer.announced.wait()
        await self.bus.flush(_HEARD_WITHIN)

    def bind_admin(self, host: str, port: int) -> int:
        """Take the admin port before anything starts (0 = any free one); returns it."""
        with binding(hostport(host, port), "admin address"):
            self._admin_socket = bind(host, port)
        return int(self._admin_socket.getsockname()[1])

    async def serve_admin(
        self, health: admin.HealthCheck, *, dashboard: Feed | None = None
    ) -> None:
        """Answer on the admin port from now on: /healthz then means the node is ready.

        With a `dashboard` feed, `/` serves the dashboard; the node starts and stops it.
        """
        assert self._admin_socket is not None, "bind_admin() first"
        if dashboard is not None:
            await dashboard.start()
            self._dashboard = dashboard
        app = admin.build(
            registry=self.registry,
            view=lambda: self.view,
            health=health,
            upstreams=lambda: self.upstreams() if self.upstreams else {},
            dashboard=dashboard.stream if dashboard is not None else None,
        )
        self._admin = await admin.serve(
            app, self._admin_socket, token=self.settings.admin_token, refused=self._refused
        )

    async def stop(self) -> None:
        """Say goodbye first (so peers stop routing here), then flush events and close."""
        if await self.announcer.leave("shutdown"):
            log.info("leave published")
        await self.events.close()
        await self.discovery.stop()
        self.coverage.stop()
        if self.presence is not None:
            await self.presence.stop()
        if self._dashboard is not None:
            # Its streams never end by themselves: the admin port's stop would wait on them.
            await self._dashboard.stop()
        if self._admin is not None:
            await self._admin.cleanup()
        elif self._admin_socket is not None:
            self._admin_socket.close()
        await self.bus.close()
