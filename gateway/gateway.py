"""The gateway process: a node of the mesh whose forwarding engine serves the edge."""

from __future__ import annotations

import asyncio
import logging
import secrets

from mesh import subjects
from mesh.bus.events import ensure_stream
from mesh.config import Settings, parse_hostport
from mesh.engine.listener import Listener
from mesh.messages import Heartbeat
from mesh.node.forwarding import Forwarding
from mesh.node.node import Node

log = logging.getLogger(__name__)

# In-flight requests get this long to finish after SIGTERM before connections are cut.
DRAIN_DEADLINE = 10.0


async def run(settings: Settings, stop: asyncio.Event, *, worker: int | None = None) -> int:
    """Serve until `stop`; a supervised `worker` shares the port with its siblings."""
    host, port = parse_hostport(settings.gateway_listen)
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
    forwarding = Forwarding(
        node,
        settings,
        role="gateway",
        zone=settings.zone,
        strip_mesh_headers=True,  # the edge: clients must not speak for the mesh
        default_routes=settings.gateway_default_routes,
        create_bucket=True,
    )
    listener = Listener(forwarding.engine, host, port, reuse_port=worker is not None)
    try:
        await listener.start(serve=False)  # a taken port ends us before we join the mesh
    except OSError as exc:
        log.error("cannot listen on %s: %s", settings.gateway_listen, exc)
        return 1
    await node.start()
    events_stream = asyncio.create_task(ensure_stream(node.bus, settings), name="events-stream")
    # The current policies apply before the first request is served.
    await forwarding.start(wait_policies=settings.policy_wait)
    await listener.serve()

    # The admin port answers once the gateway serves: its /healthz means "ready".
    bound_admin = await node.serve_admin(
        admin_host,
        admin_port,
        lambda: (True, {"instance": record.instance, "nats": node.bus.connected}),
    )
    node.announcer.update(port=listener.port, admin_port=bound_admin)

    log.info(
        "gateway %s listening on %s:%d (admin %s:%d)",
        record.instance,
        host,
        listener.port,
        admin_host,
        bound_admin,
    )
    await stop.wait()
    log.info("stopping: draining in-flight requests (up to %g s)", DRAIN_DEADLINE)
    events_stream.cancel()
    cut = await listener.stop(DRAIN_DEADLINE)
    if cut:
        log.warning("%d connections cut at the drain deadline", cut)
    await forwarding.stop()
    await node.stop()
    return 0
