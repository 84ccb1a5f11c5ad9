"""A NATS cluster of nats-server children, JetStream on each (`mesh up --cluster`, tests)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from mesh.addresses import hostport
from mesh.clock import monotonic
from mesh.errors import NatsServerError
from mesh.node.ports import free_port
from mesh.playground import accounts
from mesh.playground.natsserver import NatsServer

CLUSTER_NAME = "natsmesh"


def node_config(
    name: str, *, cluster: str, listen: str, routes: Sequence[str], include: str | None = None
) -> str:
    """One node's config: its server name (JetStream's Raft groups know peers by it), the
    cluster's name, where it listens for routes and every node's route (its own included:
    a node skips itself, so one list serves all), and a file to `include` beside it (the
    accounts, the same on every node). Clients and JetStream are set apart."""
    lines = ",\n".join(f"    nats-route://{route}" for route in routes)
    return (
        (f'include "{include}"\n' if include is not None else "") + f"server_name: {name}\n"
        "cluster {\n"
        f"  name: {cluster}\n"
        f"  listen: {listen}\n"
        f"  routes: [\n{lines}\n  ]\n"
        "}\n"
    )


class NatsCluster:
    """`size` nats-servers on `host`, clustered by routes, each with its own store dir.

    Like NatsServer, every method blocks (see there for why). A node killed and
    restarted comes back on the same client and route ports, with its store.
    """

    def __init__(
        self,
        binary: str,
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        folder: str | Path | None = None,
        presence: bool = False,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        if size < 1:
            raise NatsServerError("a NATS cluster needs at least 1 node")
        self._given = folder is not None
        self.folder = (
            Path(folder)
            if folder is not None
            else Path(tempfile.mkdtemp(prefix="natsmesh-cluster-"))
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        routes = [hostport(host, free_port(host)) for _ in range(size)]
        # One set of accounts on every node: a presence login on any node hears the
        # advisories of the mesh's clients on all of them (see mesh.playground.accounts).
        self.accounts = accounts.write(self.folder / "accounts.conf") if presence else None
        include = None if self.accounts is None else self.accounts.config.name
        self.names = [f"mesh-nats-{chr(ord('a') + n)}" for n in range(size)]
        self.servers: list[NatsServer] = []
        for name, route in zip(self.names, routes, strict=True):
            config = self.folder / f"{name}.conf"
            config.write_text(
                node_config(
                    name, cluster=CLUSTER_NAME, listen=route, routes=routes, include=include
                )
            )
            server = NatsServer(
                binary, host=host, store_dir=self.folder / name, config_file=config, clock=clock
            )
            self.servers.append(server)

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (MESH_NATS_URL's form)."""
        return ",".join(server.url for server in self.servers)

    def start(self, timeout: float = 10.0) -> None:
        """Start every node; each is up once it takes clients (its JetStream leader comes later:
        see mesh.bus.setup). Any node failing stops those started: no half a cluster."""
        try:
            for server in self.servers:
                server.launch()
            for name, server in zip(self.names, self.servers, strict=True):
                try:
                    server.wait_ready(timeout)
                except NatsServerError as exc:
                    raise NatsServerError(f"NATS node {name}: {_one_line(exc)}") from None
        except NatsServerError:
            self.stop()
            raise

    def node(self, url: str) -> NatsServer:
        """The node serving `url`."""
        return next(server for server in self.servers if server.url == url)

    def stop(self, timeout: float = 5.0) -> None:
        for server in self.servers:
            server.stop(timeout)
        if not self._given:
            shutil.rmtree(self.folder, ignore_errors=True)


def _one_line(exc: NatsServerError) -> str:
    """NatsServer's error (a headline, then its log's tail) as its headline and last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(":") + (f": {lines[-1]}" if len(lines) > 1 else "")
