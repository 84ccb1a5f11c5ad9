"""The gateway process: a node of the mesh whose forwarding engine serves the edge."""

from __future__ import annotations

import asyncio
import logging
import secrets

from mesh import subjects
from mesh.config import Settings, parse_hostport
from mesh.directory import Directory
from mesh.engine.engine import Engine
from mesh.engine.listener import Listener
from mesh.events import ensure_stream
from mesh.messages import Heartbeat
from mesh.node import Node
from mesh.view import View

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
    directory = Directory()
    engine = Engine(settings, directory, node.metrics, strip_mesh_headers=True)

    def adopt(view: View) -> None:
        engine.view_changed(directory.update(view))

    node.discovery.on_change(adopt)
    listener = Listener(engine, host, port, reuse_port=worker is not None)
    await listener.start()
    bound_admin = await node.serve_admin(
        admin_host,
        admin_port,
        lambda: (True, {"instance": record.instance, "nats": node.bus.connected}),
    )
    node.announcer.update(port=listener.port, admin_port=bound_admin)
    await node.start()
    events_stream = asyncio.create_task(ensure_stream(node.bus, settings), name="events-stream")
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
    await node.stop()
    return 0
