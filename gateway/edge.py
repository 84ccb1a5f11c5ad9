"""The gateway's client-facing listeners: plain HTTP and HTTPS, bound here or inherited."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from mesh import tls
from mesh.addresses import bind, parse_hostport
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.listener import BACKLOG, Listener
from mesh.errors import ConfigError
from mesh.metrics import Metrics
from mesh.node.ports import binding
from mesh.security.rotation import CertificateReloader
from mesh.tasks import cancel_and_wait


@dataclass(frozen=True, slots=True)
class Address:
    """One listener a gateway runs: its setting's value, and how messages name it."""

    address: str
    what: str  # 'listen address': PortUnavailable names it so
    tls: bool


def addresses(settings: Settings) -> list[Address]:
    """The plain listener, the HTTPS one, or both, as the settings ask (plain first)."""
    wanted = [
        Address(settings.gateway_listen, "listen address", tls=False),
        Address(settings.gateway_listen_tls, "TLS listen address", tls=True),
    ]
    return [a for a in wanted if a.address]


def tls_files(settings: Settings) -> tuple[str, str]:
    """The HTTPS listener's certificate and key files."""
    cert, key = settings.gateway_tls_cert, settings.gateway_tls_key
    if not (cert and key):
        raise ConfigError("HTTPS needs MESH_GATEWAY_TLS_CERT and MESH_GATEWAY_TLS_KEY")
    return cert, key


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The HTTPS listener's context; ConfigError names a certificate that cannot be used."""
    return tls.server_context(*tls_files(settings))


def listening(settings: Settings) -> list[socket.socket]:
    """A listening socket per address, for a supervisor to hand to its workers.

    Bound once and without SO_REUSEPORT: while they live, nobody else (a second gateway
    among them) can listen there. PortUnavailable names the first address taken.
    """
    taken: list[socket.socket] = []
    try:
        for each in addresses(settings):
            with binding(each.address, each.what):
                sock = bind(*parse_hostport(each.address))
                taken.append(sock)
                sock.listen(BACKLOG)
    except BaseException:
        for sock in taken:
            sock.close()
        raise
    return taken


class EdgeListeners:
    """The listeners of one gateway process, on sockets of its own or its supervisor's.

    `inherited`: descriptors of listening sockets from `listening`, in the same order
    as `addresses`; None binds them here.
    """

    def __init__(
        self, settings: Settings, engine: Engine, metrics: Metrics, inherited: list[int] | None
    ) -> None:
        self._addresses = addresses(settings)
        self._engine = engine
        self._reloader: CertificateReloader | None = None
        self._watch: asyncio.Task[None] | None = None
        self.listeners: list[Listener] = []
        for index, each in enumerate(self._addresses):
            context = None
            if each.tls:
                context = tls_context(settings)
                self._reloader = CertificateReloader(context, *tls_files(settings), metrics)
            sock = None if inherited is None else socket.socket(fileno=inherited[index])
            host, port = parse_hostport(each.address)
            self.listeners.append(Listener(engine, host, port, sock=sock, ssl=context))

    async def start(self) -> None:
        """Bind (or adopt) every socket, accepting nothing yet; a taken port ends it here."""
        started: list[Listener] = []
        try:
            for each, listener in zip(self._addresses, self.listeners, strict=True):
                with binding(each.address, each.what):
                    await listener.start(serve=False)
                started.append(listener)
        except BaseException:
            for listener in started:
                await listener.stop(0)
            raise

    async def serve(self) -> None:
        for listener in self.listeners:
            await listener.serve()
        if self._reloader is not None:
            self._watch = asyncio.create_task(self._reloader.watch(), name="tls-reload")

    @property
    def announced(self) -> tuple[str, int]:
        """The address the gateway announces: its plain listener's, else its HTTPS one's."""
        first = self.listeners[0]
        return first.host, first.port

    def describe(self) -> str:
        """'http 127.0.0.1:8000, https 127.0.0.1:8443' for the start-up line."""
        return ", ".join(
            f"{'https' if each.tls else 'http'} {listener.host}:{listener.port}"
            for each, listener in zip(self._addresses, self.listeners, strict=True)
        )

    async def stop(self, deadline: float) -> int:
        """Stop accepting on all, then drain their one engine; connections cut at the deadline."""
        await cancel_and_wait(self._watch)
        for listener in self.listeners:
            listener.close()
        return await self._engine.drain(deadline)
