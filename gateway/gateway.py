"""The gateway process: a node of the mesh whose forwarding engine serves the edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from gateway.edge import EdgeListeners, addresses
from gateway.haproxy_edge import HaproxyEdge
from mesh import subjects
from mesh.addresses import parse_hostport
from mesh.bus.events import ensure_stream
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.forwarding.directory import Directory
from mesh.forwarding.policy_feed import bucket, ensure_bucket
from mesh.haproxy.plane import restart_event
from mesh.messages import Heartbeat
from mesh.node.forwarding import Forwarding
from mesh.node.node import Node
from mesh.observe.feed import Feed
from mesh.security.identity import Identity
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# In-flight requests get this long to finish after SIGTERM before connections are cut.
DRAIN_DEADLINE = 10.0


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    worker: int | None = None,
    inherited: list[int] | None = None,
) -> int:
    """Serve until `stop`; a supervised `worker` serves on the sockets its supervisor
    listens on (`inherited` descriptors, see gateway.edge)."""
    host, port = parse_hostport(addresses(settings)[0].address)
    admin_host, admin_port = parse_hostport(settings.gateway_admin)
    name = subjects.check_name(settings.gateway_name)
    record = Heartbeat(
        service=name,
        instance=f"{name}-{secrets.token_hex(3)}" + ("" if worker is None else f"-w{worker}"),
        role="gateway",
        host=host,
        port=port or 1,
        incarnation=0,
        seq=0,
        interval=settings.timing.interval,
    )
    node = Node(settings, record)
    # The edge: clients must not speak for the mesh, so their x-mesh-* headers go.
    engine = Engine(settings, Directory(node=node.name), node.metrics, strip_mesh_headers=True)
    fallback = engine.default_routes if settings.gateway_default_routes else None
    listeners: EdgeListeners | HaproxyEdge
    if settings.gateway_data_plane == "haproxy":

        def restarted(how: str, restarts: int) -> None:
            node.events.emit(restart_event(node.name, name, how, restarts))

        listeners = HaproxyEdge(settings, engine, node.metrics, on_restart=restarted)
    else:
        listeners = EdgeListeners(settings, engine, node.metrics, inherited)
    forwarding = Forwarding(
        node,
        engine,
        settings,
        zone=settings.zone,
        fallback=fallback,
        policies=bucket(node.bus),
        edge=True,
        plane=listeners.plane if isinstance(listeners, HaproxyEdge) else None,
    )
    node.announcer.load_source = forwarding.load
    if isinstance(listeners, HaproxyEdge):
        listeners.describe_upstreams(node)
    # Every port first: a taken one ends the gateway before it joins the mesh.
    await listeners.start()
    # With mTLS on, the gateway calls agents' inbound listeners as `gateway_name`.
    identity = None
    if settings.mtls != "off":
        identity = Identity(node.bus, name, settings.trust_domain, metrics=node.metrics)
        engine.upstream_tls = identity.peer_check
    try:
        bound_admin = node.bind_admin(admin_host, admin_port)
        if identity is not None:
            await identity.first(node.bus, settings.cert_wait)
    except BaseException:
        await listeners.stop(0)
        await node.bus.close()
        raise
    if identity is not None:
        identity.start()
    await node.start()
    # The gateway sets up what the mesh keeps in JetStream: the event log and the policy
    # bucket (so that a first `mesh policy apply` is seen at once).
    setup = asyncio.create_task(_set_up(node, settings), name="jetstream-setup")
    ready_by = asyncio.get_running_loop().time() + settings.policy_wait
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(setup), settings.policy_wait)
    # The current policies apply before the first request is served.
    await forwarding.start(wait_policies=max(0.0, ready_by - asyncio.get_running_loop().time()))
    # And the members its sync asked for: every service it follows is known when it serves.
    await node.discovery.settled(quiet=SETTLE_QUIET, most=SETTLE_MOST)
    await listeners.serve()
    dashboard = Feed(
        node.bus,
        node.discovery,
        node.metrics,
        node=node.name,
        readers=settings.dashboard_readers,
        every=settings.timing.interval,
    )
    # The admin port answers once the gateway serves: its /healthz means "ready".
    await node.serve_admin(
        lambda: (True, {"instance": record.instance, "nats": node.bus.connected}),
        dashboard=dashboard,
    )
    node.announcer.update(port=listeners.announced[1], admin_port=bound_admin)
    log.info(
        "gateway %s listening on %s (admin %s:%d)",
        record.instance,
        listeners.describe(),
        admin_host,
        bound_admin,
    )
    await stop.wait()
    log.info("stopping: draining in-flight requests (up to %g s)", DRAIN_DEADLINE)
    await cancel_and_wait(setup)  # still retrying, perhaps: its end is awaited, not left
    cut = await listeners.stop(DRAIN_DEADLINE)
    if cut:
        log.warning("%d connections cut at the drain deadline", cut)
    if identity is not None:
        await identity.stop()
    await forwarding.stop()
    await node.stop()
    return 0


# Before serving, the view must have been still this long (seconds; the nodes answer a
# sync within 50 ms), or the gateway serves what it holds after SETTLE_MOST: a fleet of
# 10,000 answers for about 2 s on a busy machine, and a start must not wait on it longer.
SETTLE_QUIET = 0.1
SETTLE_MOST = 1.0


async def _set_up(node: Node, settings: Settings) -> None:
    """The event stream and the policy bucket; each retries until NATS lets it."""
    await asyncio.gather(ensure_stream(node.bus, settings), ensure_bucket(node.bus))
