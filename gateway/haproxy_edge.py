"""The gateway's edge served by a local HAProxy (MESH_GATEWAY_DATA_PLANE=haproxy)."""

from __future__ import annotations

from collections.abc import Callable

from mesh.addresses import bind, parse_hostport
from mesh.clock import monotonic
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.errors import ConfigError
from mesh.haproxy.binary import find_binary
from mesh.haproxy.plane import HaproxyPlane
from mesh.haproxy.render import PlaneConfig
from mesh.haproxy.support import NOT_YET
from mesh.metrics import Metrics
from mesh.node.node import Node
from mesh.node.ports import binding, free_port
from mesh.policy.compile import Compiled


def refusals(settings: Settings) -> list[str]:
    """What the settings ask that the HAProxy data plane does not do (yet)."""
    asked = {
        "MESH_GATEWAY_LISTEN_TLS (HTTPS)": bool(settings.gateway_listen_tls),
        "MESH_MTLS (calls to agents over mTLS)": settings.mtls != "off",
        "MESH_GATEWAY_WORKERS above 1 (HAProxy has threads of its own)": (
            settings.gateway_workers > 1
        ),
        "MESH_ACCESS_LOG": bool(settings.access_log),
    }
    return [f"{what}: {NOT_YET}" for what, on in asked.items() if on]


class HaproxyEdge:
    """HAProxy listening where the gateway's own listeners would, fed by its directory.

    Like the Python edge it takes its ports first (a taken one ends the gateway before it
    joins the mesh) and serves only once `serve` is called: HAProxy starts then, with the
    policies and members the gateway holds by that time in its first configuration.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        metrics: Metrics,
        *,
        on_restart: Callable[[str, int], None],
    ) -> None:
        problems = refusals(settings)
        if problems:
            raise ConfigError("; ".join(problems))
        self._settings = settings
        self._engine = engine  # not serving: it keeps the directory and router for explain
        self._directory = directory = engine.directory
        self._binary = find_binary(settings.haproxy_bin)
        host, port = parse_hostport(settings.gateway_listen)
        self.announced = (host, port)
        self._probe = ("127.0.0.1", free_port())
        self.plane = HaproxyPlane(
            directory, metrics, self._config, self._binary, on_restart=on_restart
        )

    def describe_upstreams(self, node: Node) -> None:
        """The node's `/mesh/upstreams` says what HAProxy has of each service, too."""
        directory, plane = self._directory, self.plane
        node.upstreams = lambda: plane.describe(directory.describe(monotonic()))

    async def start(self) -> None:
        """The listen port must be free now (HAProxy binds it when it starts, in `serve`);
        port 0 is resolved to a free port here."""
        host, port = self.announced
        with binding(self._settings.gateway_listen, "listen address"):
            sock = bind(host, port)
        self.announced = sock.getsockname()[:2]
        sock.close()

    async def serve(self) -> None:
        await self.plane.start()
        self._engine.start_sweeping()  # the directory's ejections run out on its sweeps

    def describe(self) -> str:
        return f"http {self.announced[0]}:{self.announced[1]} (haproxy {self._binary})"

    async def stop(self, deadline: float) -> int:
        """HAProxy finishes what it has (up to `deadline`), then ends; none are counted cut."""
        await self.plane.stop()
        await self._engine.drain(0)  # its sweeps: it had no connection of its own
        return 0

    def _config(self, compiled: Compiled, revision: str) -> PlaneConfig:
        return plane_config(
            self._settings,
            listen=self.announced,
            log_socket=self.plane.log_socket,
            probe=self._probe,
            revision=revision,
            known=self._directory.known,
        )


def plane_config(
    settings: Settings,
    *,
    listen: tuple[str, int],
    log_socket: str,
    probe: tuple[str, int],
    revision: str,
    known: frozenset[str],
) -> PlaneConfig:
    """What the gateway's settings make of its HAProxy configuration (bench.plane_cost
    renders the same one)."""
    return PlaneConfig(
        listen=(listen,),
        log_socket=log_socket,
        probe=probe,
        revision=revision,
        default_routes=settings.gateway_default_routes,
        known=known,
        client_header_timeout=settings.client_header_timeout,
        client_idle_timeout=settings.client_idle_timeout,
        normalize_path=settings.normalize_path,
        max_body_bytes=settings.max_body_bytes,
        log_sample=settings.haproxy_log_sample,
    )
