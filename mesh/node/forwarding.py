"""A node's forwarding path wired to the mesh: directory, engine, policies and evidence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from mesh import clock, subjects
from mesh.bus import Delivery
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.request import Request
from mesh.errors import BusError, InvalidMessage, NoRoute
from mesh.forwarding.defaults import default_service
from mesh.forwarding.directory import Directory
from mesh.forwarding.policy_feed import PolicyFeed, PolicyRejected
from mesh.forwarding.policy_routes import PolicyRouter
from mesh.forwarding.routing import Routed
from mesh.membership.view import View
from mesh.messages import Event, EventKind, Evidence, decode, encode
from mesh.node.node import Node
from mesh.policy.compile import compile_revision
from mesh.policy.model import Document
from mesh.resilience.outlier import Ejected, Restored

log = logging.getLogger(__name__)

# Observers that eject the same instance within one such window store one event.
_EVENT_BUCKET = 30.0


class Forwarding:
    """Gateway and agent outbound proxy alike: the engine fed by the view and the policies."""

    def __init__(
        self,
        node: Node,
        settings: Settings,
        *,
        role: str,
        zone: str,
        strip_mesh_headers: bool,
        default_routes: bool,
        create_bucket: bool,
    ) -> None:
        self.node = node
        self.zone = zone or settings.zone
        self._default = default_service(settings)
        self._default_routes = default_routes
        self.directory = Directory(
            node=node.name,
            compiled=compile_revision({}, default=self._default, zone=self.zone),
        )
        self.directory.on_evidence = self._publish_evidence
        self.directory.on_ejection = self._ejection_event
        self.engine = Engine(
            settings, self.directory, node.metrics, strip_mesh_headers=strip_mesh_headers
        )
        self.engine.router = self.engine.default_router if default_routes else _no_route
        self.engine.on_sweep = self._sweep
        node.discovery.on_change(self._view_changed)
        self.feed = PolicyFeed(
            node.bus,
            node=node.name,
            role=role,
            events=node.events,
            metrics=node.metrics,
            compile_and_swap=self._swap,
            defaults=self._default,
            create_bucket=create_bucket,
        )
        node.metrics.gauge(
            "mesh_ejections_active", "Instances ejected here.", ("service",), self._ejected
        )
        self._tasks: set[asyncio.Task[None]] = set()
        node.upstreams = lambda: self.directory.describe(clock.monotonic())

    async def start(self, *, wait_policies: float) -> None:
        """Listen for evidence and policies; wait (bounded) for the current policies."""
        await self.node.bus.subscribe(subjects.EVIDENCE, self._on_evidence)
        await self.feed.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.ready.wait(), wait_policies)
        if not self.feed.ready.is_set():
            log.warning("serving before the policies arrived (NATS unreachable?)")

    async def stop(self) -> None:
        await self.feed.stop()

    # --- inputs ---

    def _view_changed(self, view: View) -> None:
        self.engine.view_changed(self.directory.update(view, clock.monotonic()))

    def _swap(self, documents: Mapping[str, Document]) -> None:
        """Compile a whole revision and swap it in; requests in flight keep the old one."""
        try:
            compiled = compile_revision(documents, default=self._default, zone=self.zone)
        except ValueError as exc:
            raise PolicyRejected(str(exc)) from exc
        self.directory.set_policies(compiled)
        fallback = self.engine.default_router if self._default_routes else None
        if compiled.routes is None:
            self.engine.router = fallback or _no_route
        else:
            self.engine.router = PolicyRouter(compiled.routes, fallback, self.engine.rng)

    async def _on_evidence(self, delivery: Delivery) -> None:
        try:
            evidence = decode(delivery.subject, delivery.data)
        except InvalidMessage as exc:
            self.node.metrics.invalid_message("evidence")
            log.debug("%s", exc)
            return
        if isinstance(evidence, Evidence):
            self.directory.receive_evidence(evidence, clock.monotonic())

    def _sweep(self) -> None:
        self.directory.tick(clock.monotonic())

    # --- outputs ---

    def _publish_evidence(self, evidence: Evidence) -> None:
        task = asyncio.get_running_loop().create_task(self._send_evidence(evidence))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_evidence(self, evidence: Evidence) -> None:
        with contextlib.suppress(BusError):
            subject = subjects.evidence(evidence.service, evidence.instance)
            await self.node.bus.publish(subject, encode(evidence))

    def _ejection_event(self, service: str, effect: Ejected | Restored) -> None:
        kind: EventKind = "instance.ejected" if isinstance(effect, Ejected) else "instance.restored"
        bucket = int(clock.wall() // _EVENT_BUCKET)
        detail = {"reason": effect.reason} if isinstance(effect, Ejected) else {}
        level = logging.WARNING if isinstance(effect, Ejected) else logging.INFO
        log.log(level, "%s %s/%s %s", kind, service, effect.instance, detail.get("reason", ""))
        self.node.events.emit(
            Event(
                id=f"{kind}:{service}:{effect.instance}:{bucket}",
                kind=kind,
                service=service,
                instance=effect.instance,
                detail=detail,
            )
        )

    def _ejected(self) -> list[tuple[tuple[str, ...], float]]:
        return [((service,), float(n)) for service, n in self.directory.ejected_counts().items()]


def _no_route(request: Request) -> Routed:
    raise NoRoute("no route matches (default routes are off)")
