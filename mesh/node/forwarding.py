"""A node's forwarding engine fed by the mesh: view changes, evidence, ejections, policies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Protocol

import msgspec

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.bus.events import EventLog
from mesh.clock import Clock
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.errors import BusError
from mesh.forwarding.defaults import default_service
from mesh.forwarding.ejection_events import EjectionEvents
from mesh.forwarding.load_window import LoadWindow
from mesh.forwarding.policy_feed import PolicyFeed, PolicyRejected, Revisions
from mesh.forwarding.policy_routes import PolicyRouter, guarded
from mesh.forwarding.routing import DefaultRoutes, Router, no_route
from mesh.membership.discovery import Discovery
from mesh.membership.view import State, View
from mesh.messages import Evidence, decode_counted, encode
from mesh.metrics import Metrics
from mesh.node.explainer import Explainer
from mesh.observe.explain_answer import Vantage
from mesh.observe.tap_source import TapSource
from mesh.policy.compile import Compiled, compile_revision
from mesh.policy.model import Document
from mesh.resilience.outlier import Ejected, Restored
from mesh.tasks import hold

log = logging.getLogger(__name__)

# A node follows at most this many services: names that requests make up (at a gateway
# following its routes, any client's Host) cannot grow its subscriptions without bound.
MOST_FOLLOWED = 4096


class Host(Protocol):
    """What the wiring takes from its node (mesh.node.node.Node; tests build one in memory)."""

    @property
    def name(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def discovery(self) -> Discovery: ...

    upstreams: Callable[[], object] | None  # the forwarding path's state, for /mesh/upstreams


class DataPlane(Protocol):
    """A forwarding engine outside this process (mesh.haproxy.plane), driven from here."""

    async def go_live(self, compiled: Compiled) -> None:
        """Serve `compiled` before it is acknowledged; PolicyRejected if it cannot."""
        ...

    def changed(self) -> None:
        """The directory changed (members, ejections, policies): bring the plane in line."""
        ...


class Forwarding:
    """Keeps an engine's directory and router in step with the mesh.

    The process composes what differs by role: the engine it passes (an edge engine
    strips `x-mesh-*` headers), its `zone`, and the `fallback` router used when no Route
    policy matches (the default routes, or none). At the `edge` (a gateway), the default
    routes never reach a service that a route with `auth` sends to; an agent's outbound
    proxy serves its own service, inside the mesh, where mTLS and `access.allow_from`
    decide, so it keeps them. `policies` is where revisions come from.
    `vet` may refuse a compiled revision this node cannot honour (ValueError saying why).
    `explains`: it answers `mesh explain` (an agent without an outbound proxy routes nothing).
    `plane`: a data plane that serves in the engine's stead (the engine then only keeps
    the directory and the router, for `mesh explain`); a revision is swapped in only
    once that plane serves it.
    """

    def __init__(
        self,
        node: Host,
        engine: Engine,
        settings: Settings,
        *,
        zone: str,
        fallback: DefaultRoutes | None,
        policies: Revisions,
        edge: bool = False,
        clock: Clock = system_clock,
        vet: Callable[[Compiled], None] | None = None,
        explains: bool = True,
        plane: DataPlane | None = None,
    ) -> None:
        self.node = node
        self._plane = plane
        self._vet = vet
        self._explains = explains
        self._clock = clock
        self.engine = engine
        self.directory = directory = engine.directory
        self._zone = zone
        self._fallback = fallback
        self._edge = edge
        self._default = default_service(settings)
        self._tasks: set[asyncio.Task[None]] = set()
        discovery = node.discovery
        if not discovery.following.everything:  # services are followed on their first call
            engine.used = discovery.used
            engine.on_unknown = self._follow_first
        self._first_wait = settings.interest_wait
        self.unfollowed = 0  # first calls not followed: MOST_FOLLOWED already were
        discovery.follow(lambda service: [subjects.evidence_about(service)], self._on_evidence)
        self._commit(*self._prepare({}))  # the settings-made policies, until the bucket's arrive
        directory.on_evidence = self._publish_evidence
        self._ejections = EjectionEvents()
        directory.on_ejection = self._ejection_event
        engine.on_sweep = self._sweep
        node.discovery.on_change(self._view_changed)
        self.feed = PolicyFeed(
            node.bus,
            policies,
            node=node.name,
            role=node.role,
            events=node.events,
            metrics=node.metrics,
            compile_and_swap=self._swap,
            defaults=self._default,
            clock=clock,
        )
        metrics, pools = node.metrics, engine.pools
        metrics.gauge(
            "mesh_ejections_active", "Instances ejected here.", ("service",), self._ejected
        )
        metrics.counter(
            "mesh_ejections_capped",
            "Ejections refused by max_ejected_percent or one observer's share.",
            (),
            lambda: [((), float(directory.capped))],
        )
        metrics.gauge(
            "mesh_upstream_requests_in_flight",
            "Requests to each service in flight here (held against its max_requests).",
            ("service",),
            lambda: [((s,), float(n)) for s, n in directory.in_flight_counts().items()],
        )
        directory.counters.expose(metrics)
        metrics.counter(
            "mesh_upstream_connections_opened",
            "Connections opened to instances (a pool reuses them).",
            (),
            lambda: [((), float(pools.opened))],
        )
        metrics.gauge(
            "mesh_upstream_connections_idle",
            "Keep-alive connections to instances waiting in the pools.",
            (),
            lambda: [((), float(pools.idle_count()))],
        )
        # `mesh tap`: this engine's requests, and (agents) the inbound listener's too.
        self.taps = TapSource(
            node.bus,
            node.name,
            node.service,
            metrics,
            per_second=settings.tap_max_records,
            most_open=settings.tap_max_open,
            # HAProxy forwards, not the engine: no request passes here to be tapped.
            cannot="its haproxy data plane cannot be tapped yet" if plane else "",
            clock=clock,
        )
        self.taps.serve(engine)
        node.upstreams = lambda: directory.describe(clock.monotonic())
        self.explainer = Explainer(
            node.bus,
            gateway=node.role == "gateway",
            service=node.service,
            instance=node.name,
            state=self._vantage,
            clock=clock,
            metrics=metrics,
        )
        # What this node forwarded, for its load reports (the process hands it to its announcer).
        self.load = LoadWindow(
            node.metrics,
            directory,
            own=node.service,
            interval=settings.timing.interval,
            now=clock.monotonic(),
        )
        metrics.gauge(
            "mesh_services_followed",
            "Services this node follows (one that follows every service: 0).",
            (),
            lambda: [((), float(len(discovery.following.interest.followed)))],
        )
        metrics.counter(
            "mesh_interest_refused",
            f"First calls whose services were not followed: {MOST_FOLLOWED} already were.",
            (),
            lambda: [((), float(self.unfollowed))],
        )
        metrics.counter(
            "mesh_load_omitted",
            "Services and instances left out of load reports over the caps.",
            (),
            lambda: [((), float(self.load.omitted))],
        )

    async def start(self, *, wait_policies: float) -> None:
        """Listen for evidence and policies; wait (bounded) for the current policies."""
        if self._explains:
            await self.explainer.start()
        await self.taps.start()
        await self.feed.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.feed.ready.wait(), wait_policies)
        if not self.feed.ready.is_set():
            log.warning("serving before the policies arrived (NATS unreachable?)")

    async def stop(self) -> None:
        await self.taps.stop()
        await self.feed.stop()

    def _vantage(self) -> Vantage:
        node = self.node
        view = node.discovery.view
        engine = self.engine
        return Vantage(
            node.name,
            node.role,
            engine.router,
            self.directory,
            view,
            self.feed.revisions,
            engine.normalize_path,
        )

    # --- inputs ---

    def _view_changed(self, view: View) -> None:
        gone = self.directory.update(view, self._clock.monotonic())
        self.engine.view_changed(gone, lambda instance: _silent(view, instance))
        self._ejections.retain(view)
        if self._plane is not None:
            self._plane.changed()

    def _swap(self, documents: Mapping[str, Document]) -> Awaitable[None] | None:
        """Compile a whole revision and swap it in; requests in flight keep the old one.
        With a data plane of its own, what to await: the swap once that plane serves it."""
        compiled, router = self._prepare(documents)
        if self._plane is None:
            self._commit(compiled, router)
            return None
        return self._go_live(self._plane, compiled, router)

    async def _go_live(self, plane: DataPlane, compiled: Compiled, router: Router) -> None:
        await plane.go_live(compiled)
        self._commit(compiled, router)

    def _prepare(self, documents: Mapping[str, Document]) -> tuple[Compiled, Router]:
        """A revision compiled, vetted and routed; PolicyRejected saying why it cannot be."""
        try:
            compiled = compile_revision(documents, default=self._default, zone=self._zone)
            if self._vet is not None:
                self._vet(compiled)
            fallback = self._fallback
            if fallback is not None and self._edge and compiled.routes is not None:
                fallback = fallback.hiding(guarded(compiled.routes))
            router = (  # reads the key files routes' auth names: it may fail here too
                PolicyRouter(compiled.routes, fallback, self.engine.rng, wall=self._clock.wall)
                if compiled.routes is not None
                else fallback or no_route
            )
        except ValueError as exc:
            raise PolicyRejected(str(exc)) from exc
        return compiled, router

    def _commit(self, compiled: Compiled, router: Router) -> None:
        self.directory.set_policies(compiled)
        self.engine.router = router
        hold(self._tasks, self.node.discovery.pin(self._preloaded(compiled)))
        if self._plane is not None:
            self._plane.changed()

    def _preloaded(self, compiled: Compiled) -> frozenset[str]:
        """What this node follows before any call: its own Service document's `preload`,
        and at the edge every service a Route policy sends to."""
        names = compiled.policy(self.node.service).preload
        if self._edge and compiled.routes is not None:
            names |= {to.service for route in compiled.routes.routes for to in route.to}
        return names

    def _follow_first(self, names: tuple[str, ...]) -> Coroutine[None, None, None] | None:
        """A request named services this node does not follow: follow them, and let it
        wait (at most MESH_INTEREST_WAIT) for one of them to have a routable member."""
        discovery = self.node.discovery
        fresh = [n for n in names if subjects.is_valid_name(n) and not discovery.interested(n)]
        if not fresh:
            return None
        if discovery.following_count + len(fresh) > MOST_FOLLOWED:
            self.unfollowed += 1
            return None
        discovery.reserve(fresh)
        return discovery.first_call(fresh, self._first_wait)

    async def _on_evidence(self, delivery: Delivery) -> None:
        evidence = decode_counted(
            delivery.subject, delivery.data, self.node.metrics.invalid_message
        )
        if not isinstance(evidence, Evidence):
            return
        # The subject vouches for the reporting service only; an observer it does not have
        # (a name made up to pose as a second, corroborating observer) is not believed.
        # Of a service this node does not follow (it knows none of its instances), every
        # observer counts as one: the reporter cannot pose as several either.
        node, reporter = self.node, evidence.reporter or ""  # decoding checked it is there
        observer = node.discovery.view.members.get(evidence.observer)
        ours = evidence.observer == node.name and reporter == node.service
        if observer is None and not ours and not node.discovery.interested(reporter):
            evidence = msgspec.structs.replace(evidence, observer=f"{reporter}:*")
        elif not ours and (observer is None or observer.record.service != reporter):
            self.node.metrics.dropped("evidence-observer")
            log.debug("evidence from %s/%s: no such member", evidence.reporter, evidence.observer)
            return
        self.directory.receive_evidence(evidence, self._clock.monotonic())

    def _sweep(self) -> None:
        self.directory.tick(self._clock.monotonic())

    # --- outputs ---

    def _publish_evidence(self, evidence: Evidence) -> None:
        member = self.node.discovery.view.members.get(evidence.instance)
        if member is not None:  # the seq heard now, which our own ejection is named after
            evidence = msgspec.structs.replace(evidence, seq=member.seq)
        hold(self._tasks, self._send_evidence(evidence))

    async def _send_evidence(self, evidence: Evidence) -> None:
        reporter = self.node.service
        stamped = msgspec.structs.replace(evidence, reporter=reporter)
        with contextlib.suppress(BusError):
            subject = subjects.evidence(reporter, evidence.service, evidence.instance)
            await self.node.bus.publish(subject, encode(stamped))

    def _ejection_event(
        self, service: str, effect: Ejected | Restored, evidence: Evidence | None
    ) -> None:
        event = self._ejections.event(service, effect, evidence, self.node.discovery.view)
        level = logging.WARNING if isinstance(effect, Ejected) else logging.INFO
        reason = event.detail.get("reason", "")
        log.log(level, "%s %s/%s %s", event.kind, service, effect.instance, reason)
        self.node.events.emit(event)
        if self._plane is not None:
            self._plane.changed()

    def _ejected(self) -> list[tuple[tuple[str, ...], float]]:
        return [((service,), float(n)) for service, n in self.directory.ejected_counts().items()]


def _silent(view: View, instance: str) -> bool:
    """Whether `instance` left routing for its silence (a crash, a cut link), not a leave,
    a drain or a failed health check, after which it still answers what it has."""
    member = view.members.get(instance)
    return member is not None and member.state in (State.SUSPECT, State.DOWN)
