"""The agent process: announces its service, checks its health, leaves on stop."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field

from agents import inbound as inbound_listener
from agents.health import HealthChecker
from mesh import subjects
from mesh.addresses import parse_hostport
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.listener import Listener
from mesh.errors import BusError
from mesh.forwarding.directory import Directory
from mesh.forwarding.policy_feed import bucket
from mesh.messages import Heartbeat
from mesh.node.admin import HealthCheck
from mesh.node.forwarding import Forwarding
from mesh.node.node import Node
from mesh.node.ports import binding
from mesh.security.identity import Identity

log = logging.getLogger(__name__)

# The local service's in-flight outbound calls get this long after SIGTERM.
DRAIN_DEADLINE = 10.0


@dataclass(frozen=True)
class AgentOptions:
    service: str
    port: int
    host: str
    health_path: str
    admin_port: int
    weight: int = 1
    zone: str = ""
    version: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    instance_id: str = ""
    outbound: str = "127.0.0.1:15001"  # '' = no outbound proxy


def instance_id(service: str) -> str:
    """Unique per process start, readable in tables."""
    return f"{service}-{secrets.token_hex(3)}"


async def run(settings: Settings, options: AgentOptions, stop: asyncio.Event) -> int:
    service = subjects.check_name(options.service)
    instance = subjects.check_name(options.instance_id or instance_id(service))
    record = Heartbeat(
        service=service,
        instance=instance,
        role="agent",
        host=options.host,
        port=options.port,
        zone=options.zone,
        version=options.version,
        weight=options.weight,
        meta=options.meta,
        incarnation=0,
        seq=0,
        health="failing",  # until the first check, before the first announcement
        interval=settings.timing.interval,
    )
    node = Node(settings, record)
    # Our own service is the caller: its x-mesh-* headers are trusted and kept.
    engine = Engine(settings, Directory(node=node.name), node.metrics, strip_mesh_headers=False)
    inbound_at = inbound_listener.address(settings, options.host)
    # Every agent takes policies (and acknowledges them), even without an outbound proxy.
    forwarding = Forwarding(
        node,
        engine,
        settings,
        zone=options.zone or settings.zone,
        fallback=engine.default_routes,
        policies=bucket(node.bus),
        vet=None if inbound_at else inbound_listener.unguarded(service),
        explains=bool(options.outbound),
    )
    node.announcer.load_source = forwarding.load
    identity = None
    if settings.mtls != "off":
        identity = Identity(node.bus, service, settings.trust_domain, metrics=node.metrics)
        engine.upstream_tls = identity.peer_check
    # Ports first: a taken one ends the agent before it ever joins the mesh.
    listeners: list[Listener] = []
    try:
        outbound = await _outbound(engine, options.outbound)
        listeners += [outbound] if outbound is not None else []
        inbound = None
        if inbound_at:
            inbound = await inbound_listener.serving_service(
                settings,
                inbound_at,
                record,
                node.metrics,
                lambda: engine.directory.policy(service).allow_from,
                identity,
            )
            listeners.append(inbound)
            forwarding.taps.serve(inbound.engine)
        admin_port = node.bind_admin(settings.agent_admin_host, options.admin_port)
        if identity is not None:
            await identity.first(node.bus, settings.cert_wait)
    except BaseException:
        for listener in listeners:
            await listener.stop(0)
        await node.bus.close()
        raise
    checker = HealthChecker(
        f"http://{options.host}:{options.port}{options.health_path}",
        interval=settings.health_interval,
        timeout=settings.health_timeout,
        fail_after=settings.health_fail_threshold,
        pass_after=settings.health_pass_threshold,
        on_change=lambda health, reason: node.announcer.update(health=health),
    )
    health = await checker.first_check()  # so the first announcement carries the truth
    # Announced failing until the inbound listener serves under the current policies:
    # no caller is sent there before its access rules are known.
    node.announcer.update(
        health=health if inbound is None else "failing",
        admin_port=admin_port,
        inbound_port=inbound.port if inbound is not None else None,
    )
    try:
        await node.start()
    except BusError:  # NATS refused our credentials: nothing to serve
        await checker.stop()
        for listener in listeners:
            await listener.stop(0)
        raise
    await forwarding.start(wait_policies=settings.policy_wait)
    # The current policies are in (or the wait ran out).
    for listener in listeners:
        await listener.serve()
    if inbound is not None:
        node.announcer.update(health=checker.verdict.health)
    if identity is not None:
        identity.start()
    await node.serve_admin(_health(checker, node, outbound, inbound))
    checker.start()
    log.info(
        "agent %s for %s at %s:%d (health %s, admin :%d, outbound %s, inbound %s, mTLS %s)",
        instance,
        service,
        options.host,
        options.port,
        health,
        admin_port,
        f"{outbound.host}:{outbound.port}" if outbound else "off",
        f"{inbound.host}:{inbound.port}" if inbound else "off",
        settings.mtls,
    )
    await stop.wait()
    log.info("stopping: leaving the mesh")
    await checker.stop()
    # Leave first (peers stop routing here), then let calls in flight either way finish.
    await node.announcer.leave("shutdown")
    await asyncio.gather(*(listener.stop(DRAIN_DEADLINE) for listener in listeners))
    if identity is not None:
        await identity.stop()
    await forwarding.stop()
    await node.stop()
    return 0


def _health(
    checker: HealthChecker, node: Node, outbound: Listener | None, inbound: Listener | None
) -> HealthCheck:
    def serving(listener: Listener | None) -> str:
        return "off" if listener is None else "serving" if listener.serving else "starting"

    def health() -> tuple[bool, dict[str, object]]:
        record = node.announcer.record
        # The listeners serve once the policies are in: callers can wait on this.
        detail: dict[str, object] = {
            "service": record.service,
            "instance": record.instance,
            "nats": node.bus.connected,
            "check": checker.last_reason,
            "outbound": serving(outbound),
            "inbound": serving(inbound),
        }
        return checker.verdict.health == "passing", detail

    return health


async def _outbound(engine: Engine, address: str) -> Listener | None:
    """The local service's way out: `HTTP_PROXY=http://<address>` or `Host: <service>`."""
    if not address:
        return None
    host, port = parse_hostport(address)
    listener = Listener(engine, host, port)
    with binding(address, "outbound proxy"):
        await listener.start(serve=False)
    return listener
