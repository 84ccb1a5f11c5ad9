"""The agent's inbound listener: terminates mTLS, enforces access rules, forwards to its service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from mesh.addresses import hostport, parse_hostport
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.listener import Listener
from mesh.engine.server import ClientConnection
from mesh.errors import AccessDenied
from mesh.forwarding.defaults import default_service
from mesh.forwarding.directory import Directory
from mesh.forwarding.routing import RequestHead, Routed, header, is_absolute, split_absolute
from mesh.membership import view as membership
from mesh.messages import Heartbeat
from mesh.metrics import Metrics
from mesh.node.ports import binding
from mesh.policy.access import allowed
from mesh.policy.compile import Compiled, compile_revision
from mesh.security.identity import Identity
from mesh.security.pki import service_of
from mesh.tls import peer_uris

log = logging.getLogger(__name__)

# The caller's SPIFFE id as its certificate proved it; what a client sends under this
# name is dropped, so the local service can trust it.
PEER_HEADER = b"x-mesh-peer"
# Istio's inbound port: beside the outbound proxy's 15001.
DEFAULT_PORT = 15006


def address(settings: Settings, host: str) -> str:
    """Where the inbound listener listens: the setting, else beside the service with mTLS."""
    if settings.agent_inbound:
        return settings.agent_inbound
    return "" if settings.mtls == "off" else hostport(host, DEFAULT_PORT)


class InboundConnection(ClientConnection):
    """A caller's connection: who it is comes from its certificate, never from its headers."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        uris = peer_uris(transport.get_extra_info("peercert"))
        self.identity = next((uri for uri in uris if uri.startswith("spiffe://")), "").encode()

    def on_headers_complete(self) -> None:
        headers = [h for h in self._headers if h[0].lower() != PEER_HEADER]
        if self.identity:
            headers.append((PEER_HEADER, self.identity))
        self._headers = headers
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        request = self._parsing
        if request is not None and request.trailers:
            request.trailers = [t for t in request.trailers if t[0].lower() != PEER_HEADER]
        super().on_message_complete()


class Gatekeeper:
    """The inbound engine's router: everything goes to the local service, if its access
    rules (`access.allow_from` of the current policies) admit the caller."""

    def __init__(
        self,
        service: str,
        trust_domain: str,
        allow_from: Callable[[], frozenset[str] | None],
    ) -> None:
        self.service = service
        self.trust_domain = trust_domain
        self._allow_from = allow_from
        self.denied: dict[str, int] = {}  # by calling service ('' : no identity)

    def __call__(self, request: RequestHead, now: float) -> Routed:
        allow_from = self._allow_from()
        if allow_from is not None:
            peer = header(request.headers, PEER_HEADER)
            caller = service_of(peer.decode("latin-1"), self.trust_domain) if peer else None
            if not allowed(allow_from, caller):
                self._deny(caller, allow_from)
        target = request.target
        if target[:1] != b"/" and is_absolute(target):
            target = split_absolute(target)[1]
        return Routed(self.service, target, "inbound")

    def _deny(self, caller: str | None, allow_from: frozenset[str]) -> None:
        who = caller or ""
        count = self.denied[who] = self.denied.get(who, 0) + 1
        shown = repr(caller) if caller else "a caller without a mesh identity"
        rules = ", ".join(sorted(allow_from)) or "nobody"
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th ...: a flood cannot flood the log
            log.warning(
                "denied %s calling %s (access.allow_from: %s); %d denied so far",
                shown,
                self.service,
                rules,
                count,
            )
        # The answer names who was refused, never the rules: they are the callee's to know.
        raise AccessDenied(
            f"{shown} may not call {self.service!r}: access denied",
            service=self.service,
            caller=who,
        )


def local_engine(settings: Settings, record: Heartbeat, metrics: Metrics) -> Engine:
    """An engine whose one instance is the local service, on its own port, in plain text.

    It never retries or ejects: the caller's engine does, across instances.
    """
    local = settings.model_copy(
        update={
            "retry_attempts": 0,
            "outlier_consecutive_5xx": 0,
            "outlier_consecutive_gateway_errors": 0,
        }
    )
    service = msgspec.structs.replace(
        record, health="passing", draining=False, inbound_port=None, incarnation=1, seq=1
    )
    view, _ = membership.apply(membership.View(timing=settings.timing), service, 0.0)
    compiled = compile_revision({}, default=default_service(local), zone="")
    directory = Directory(node=record.instance, compiled=compiled)
    directory.update(view)
    return Engine(local, directory, metrics, strip_mesh_headers=False)


async def open_inbound(
    settings: Settings,
    where: str,
    engine: Engine,
    gatekeeper: Gatekeeper,
    identity: Identity | None,
) -> Listener:
    """Bind the inbound listener (not serving yet): mTLS, mTLS or plain (permissive), or
    plain (mTLS off, an inbound listener asked for all the same)."""
    engine.router = gatekeeper
    host, port = parse_hostport(where)
    listener = Listener(
        engine,
        host,
        port,
        ssl=identity.server if identity is not None else None,
        plain_too=settings.mtls == "permissive",
        connection=InboundConnection,
    )
    with binding(where, "inbound listener"):
        await listener.start(serve=False)
    return listener


async def serving_service(
    settings: Settings,
    where: str,
    record: Heartbeat,
    metrics: Metrics,
    allow_from: Callable[[], frozenset[str] | None],
    identity: Identity | None,
) -> Listener:
    """The agent's inbound listener for the service `record` announces, bound at `where`;
    `allow_from` reads the service's current access rules."""
    gatekeeper = Gatekeeper(record.service, settings.trust_domain, allow_from)
    metrics.counter(
        "mesh_access_denied",
        "Calls refused by access.allow_from (403 RBAC), by calling service.",
        ("caller",),
        lambda: [((caller or "-",), float(n)) for caller, n in gatekeeper.denied.items()],
    )
    engine = local_engine(settings, record, metrics)
    return await open_inbound(settings, where, engine, gatekeeper, identity)


def unguarded(service: str) -> Callable[[Compiled], None]:
    """Without an inbound listener nothing checks callers: a revision giving our own
    service access rules is refused rather than acknowledged and not enforced."""

    def vet(compiled: Compiled) -> None:
        if compiled.policy(service).allow_from is not None:
            raise ValueError(
                f"access.allow_from of {service!r} needs its agents' inbound listener "
                "(MESH_MTLS=permissive or strict)"
            )

    return vet
