"""The gateway's HAProxy configuration for bench.proxy's scenario, rendered as the gateway does."""

from __future__ import annotations

from bench.targets import SERVICE
from gateway.haproxy_edge import plane_config
from mesh.config import Settings
from mesh.forwarding.defaults import default_service
from mesh.forwarding.directory import Directory
from mesh.haproxy.render import backends, render
from mesh.haproxy.servers import desired
from mesh.membership import view as membership
from mesh.messages import Heartbeat
from mesh.policy.compile import compile_revision

INSTANCE = "bench-upstream"  # the agent's --instance-id in bench.proxy


def gateway_config(
    settings: Settings, *, upstream: int, listen: int, probe: int, log_socket: str
) -> str:
    """No policy documents (default routes to service `bench`), its one instance at the
    loopback `upstream`, the gateway's settings (its default log sampling among them):
    the configuration its HAProxy would get in bench.proxy."""
    record = Heartbeat(
        service=SERVICE, instance=INSTANCE, host="127.0.0.1", port=upstream, incarnation=1, seq=1
    )
    view, _ = membership.apply(membership.View(timing=settings.timing), record, 0.0)
    compiled = compile_revision({}, default=default_service(settings), zone=settings.zone)
    directory = Directory(node="plane-cost", compiled=compiled)
    directory.update(view)
    plane = plane_config(
        settings,
        listen=("127.0.0.1", listen),
        log_socket=log_socket,
        probe=("127.0.0.1", probe),
        revision="plane-cost",
        known=directory.known,
    )
    servers = desired(directory, backends(compiled, plane))
    return render(compiled, plane, {name: tuple(s.values()) for name, s in servers.items()})
