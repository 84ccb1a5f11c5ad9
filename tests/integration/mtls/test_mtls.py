"""mTLS between services: certificates from the mesh CA over NATS, the inbound listener, RBAC.

In process, over a real nats-server and real loopback sockets: a caller's engine (as its
agent's outbound proxy runs it) dials the callee agent's inbound listener (as the agent
builds it) over mTLS; the callee's service echoes what reached it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from agents.inbound import Gatekeeper, local_engine, open_inbound
from mesh import subjects
from mesh.bus import NatsBus
from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.listener import Listener
from mesh.forwarding.defaults import default_service
from mesh.forwarding.directory import Directory
from mesh.membership import view as membership
from mesh.messages import Heartbeat
from mesh.metrics import Metrics
from mesh.playground.natsserver import NatsServer
from mesh.policy.compile import compile_revision
from mesh.security import pki
from mesh.security.ca_cli import Signer
from mesh.security.identity import Identity

NOW = datetime.now(UTC)


@pytest.fixture
async def nats(module_nats: NatsServer) -> AsyncIterator[Callable[[], Awaitable[NatsBus]]]:
    """Connected buses on this module's own nats-server (its own CA answers there)."""
    made: list[NatsBus] = []

    async def connect() -> NatsBus:
        bus = NatsBus(Settings(nats_url=module_nats.url), name="test")
        await bus.start(wait=5.0)
        made.append(bus)
        return bus

    yield connect
    for bus in made:
        await bus.close()


async def _ca(nats: Callable[[], Awaitable[NatsBus]], lifetime: float = 86400.0) -> Signer:
    bus = await nats()
    authority = pki.new_authority("test mesh CA", NOW, timedelta(days=1))
    signer = Signer(bus, authority, Settings(cert_lifetime=lifetime))
    await bus.subscribe(subjects.CA_SIGN, signer.answer)
    await bus.flush(2.0)
    return signer


async def _identity(nats: Callable[[], Awaitable[NatsBus]], service: str) -> Identity:
    identity = Identity(await nats(), service, "natsmesh.local")
    await identity.obtain(timeout=5.0)
    return identity


async def _service() -> tuple[web.AppRunner, int]:
    """The callee's service: echoes the headers it got (x-mesh-peer above all)."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path_qs, "headers": dict(request.headers)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def _record(service: str, port: int, inbound_port: int | None = None) -> Heartbeat:
    return Heartbeat(
        service=service,
        instance=f"{service}-1",
        host="127.0.0.1",
        port=port,
        incarnation=1,
        seq=1,
        inbound_port=inbound_port,
    )


class Callee:
    """A service with its agent's inbound listener in front."""

    def __init__(self, listener: Listener, gatekeeper: Gatekeeper, runner: web.AppRunner) -> None:
        self.listener, self.gatekeeper, self.runner = listener, gatekeeper, runner
        self.allow_from: frozenset[str] | None = None

    @property
    def port(self) -> int:
        return self.listener.port

    async def close(self) -> None:
        await self.listener.stop(0)
        await self.runner.cleanup()


async def _callee(
    service: str, identity: Identity | None, mtls: str = "strict", access_log: str = ""
) -> Callee:
    runner, port = await _service()
    settings = Settings(mtls=mtls, access_log=access_log)  # type: ignore[arg-type]
    callee: Callee | None = None
    gatekeeper = Gatekeeper(
        service, "natsmesh.local", lambda: callee.allow_from if callee else None
    )
    engine = local_engine(settings, _record(service, port), Metrics())
    listener = await open_inbound(settings, "127.0.0.1:0", engine, gatekeeper, identity)
    await listener.serve()
    callee = Callee(listener, gatekeeper, runner)
    return callee


async def _caller(
    identity: Identity | None, routes: dict[str, int], **settings: Any
) -> tuple[Listener, Engine]:
    """A caller's outbound engine whose view holds one instance per service, at an inbound port."""
    settings.setdefault("retry_attempts", 0)
    view = membership.View(timing=Settings().timing)
    for service, inbound in routes.items():
        view, _ = membership.apply(view, _record(service, 9, inbound), 0.0)
    directory = Directory(
        compiled=compile_revision({}, default=default_service(Settings(**settings)), zone="")
    )
    directory.update(view)
    engine = Engine(Settings(**settings), directory, Metrics(), strip_mesh_headers=False)
    if identity is not None:
        engine.upstream_tls = identity.peer_check
    listener = Listener(engine, "127.0.0.1", 0)
    await listener.start()
    return listener, engine


async def _get(port: int, service: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    async with ClientSession() as session:
        url = f"http://127.0.0.1:{port}/orders?id=7"
        async with session.get(url, headers={"Host": service, **headers}) as response:
            return response.status, dict(response.headers), json.loads(await response.read())


async def test_an_allowed_caller_reaches_the_service_with_its_identity(
    nats: Callable[[], Awaitable[NatsBus]], tmp_path: Path
) -> None:
    await _ca(nats)
    log = tmp_path / "inbound.log"
    callee = await _callee("payments", await _identity(nats, "payments"), access_log=str(log))
    callee.allow_from = frozenset({"checkout"})
    caller, _ = await _caller(await _identity(nats, "checkout"), {"payments": callee.port})
    try:
        # A caller cannot speak for another: its own x-mesh-peer is replaced.
        status, _, body = await _get(
            caller.port, "payments", **{"x-mesh-peer": "spiffe://natsmesh.local/ns/default/sa/x"}
        )
        assert status == 200
        assert body["path"] == "/orders?id=7"
        peer = [v for k, v in body["headers"].items() if k.lower() == "x-mesh-peer"]
        assert peer == ["spiffe://natsmesh.local/ns/default/sa/checkout"]
        # The inbound listener's access log names the caller its certificate proved.
        await callee.listener.stop(0)
        (line,) = [json.loads(text) for text in log.read_text().splitlines()]
        assert (line["peer"], line["route"]) == (peer[0], "inbound")
    finally:
        await caller.stop(0)
        await callee.close()


async def test_a_caller_not_allowed_gets_403_rbac_counted(
    nats: Callable[[], Awaitable[NatsBus]],
) -> None:
    await _ca(nats)
    callee = await _callee("payments", await _identity(nats, "payments"))
    callee.allow_from = frozenset({"checkout"})
    caller, _ = await _caller(await _identity(nats, "frontend"), {"payments": callee.port})
    try:
        status, headers, body = await _get(caller.port, "payments")
        assert (status, headers["x-mesh-flags"]) == (403, "RBAC")
        assert body["error"] == "AccessDenied"
        assert "'frontend' may not call 'payments'" in body["detail"]
        assert "checkout" not in body["detail"]  # the callee's rules are not the caller's
        assert callee.gatekeeper.denied == {"frontend": 1}
        callee.allow_from = frozenset({"*"})  # any mesh identity
        assert (await _get(caller.port, "payments"))[0] == 200
    finally:
        await caller.stop(0)
        await callee.close()


async def test_the_callee_must_show_the_callees_identity(
    nats: Callable[[], Awaitable[NatsBus]],
) -> None:
    await _ca(nats)
    # The view says payments is at this port, but the certificate there is orders'.
    impostor = await _callee("orders", await _identity(nats, "orders"))
    caller, _ = await _caller(await _identity(nats, "checkout"), {"payments": impostor.port})
    try:
        status, headers, body = await _get(caller.port, "payments")
        assert (status, headers["x-mesh-flags"]) == (502, "UF")
        assert "not spiffe://natsmesh.local/ns/default/sa/payments" in body["detail"]
    finally:
        await caller.stop(0)
        await impostor.close()


async def _raw(port: int, context: ssl.SSLContext | None) -> bytes:
    """One request straight to an inbound listener; what came back (b'' if nothing)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), 5.0
    )
    try:
        writer.write(b"GET /x HTTP/1.1\r\nHost: payments\r\nx-mesh-peer: forged\r\n\r\n")
        return await asyncio.wait_for(reader.read(65536), 5.0)
    finally:
        writer.close()


async def _refused(port: int, context: ssl.SSLContext | None) -> bool:
    """The connection fails, or ends without a byte of an answer (TLS 1.3 may refuse a
    client certificate after the client thinks the handshake is done)."""
    try:
        return await _raw(port, context) == b""
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def _anonymous_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_strict_refuses_clients_without_a_mesh_certificate(
    nats: Callable[[], Awaitable[NatsBus]], tmp_path: Path
) -> None:
    await _ca(nats)
    callee = await _callee("payments", await _identity(nats, "payments"))
    try:
        # Plain text: no HTTP answer at all (its bytes are no TLS handshake).
        assert await _refused(callee.port, None)
        # TLS without a client certificate, and with one of another CA.
        stranger = pki.new_authority("stranger", NOW, timedelta(days=1))
        key = pki.new_key()
        cert = pki.issue(
            stranger,
            key.public_key(),
            common_name="checkout",
            now=NOW,
            lifetime=timedelta(hours=1),
            uris=[pki.spiffe_id("natsmesh.local", "checkout")],
        )
        (tmp_path / "c.pem").write_bytes(pki.cert_pem(cert))
        (tmp_path / "k.pem").write_bytes(pki.key_pem(key))
        foreign = _anonymous_tls()
        foreign.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
        assert await _refused(callee.port, _anonymous_tls())
        assert await _refused(callee.port, foreign)
        assert callee.gatekeeper.denied == {}
    finally:
        await callee.close()


async def test_permissive_takes_plain_text_too_but_no_forged_identity(
    nats: Callable[[], Awaitable[NatsBus]],
) -> None:
    await _ca(nats)
    callee = await _callee("payments", await _identity(nats, "payments"), mtls="permissive")
    caller, _ = await _caller(await _identity(nats, "checkout"), {"payments": callee.port})
    plain, _ = await _caller(None, {"payments": callee.port})  # an agent with mTLS off
    try:
        answer = await _raw(callee.port, None)
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"forged" not in answer  # the client's x-mesh-peer never reaches the service
        status, _, body = await _get(caller.port, "payments")
        assert status == 200
        assert body["headers"]["x-mesh-peer"] == "spiffe://natsmesh.local/ns/default/sa/checkout"
        # With access rules, a caller without an identity is admitted by none of them.
        callee.allow_from = frozenset({"*"})
        status, headers, body = await _get(plain.port, "payments")
        assert (status, headers["x-mesh-flags"]) == (403, "RBAC")
        assert "without a mesh identity" in body["detail"]
        assert (await _get(caller.port, "payments"))[0] == 200
    finally:
        for listener in (caller, plain):
            await listener.stop(0)
        await callee.close()


async def test_renewal_under_load_drops_no_request(
    nats: Callable[[], Awaitable[NatsBus]],
) -> None:
    """2 s certificates, renewed every 1.33 s, for 3.5 s of requests that each need a
    handshake: without renewal, those after 2 s would fail."""
    signer = await _ca(nats, lifetime=2.0)
    payments, checkout = await _identity(nats, "payments"), await _identity(nats, "checkout")
    callee = await _callee("payments", payments)
    callee.allow_from = frozenset({"checkout"})
    # No idle upstream connections: every request is a new mTLS handshake on both sides,
    # so an expired or half-loaded certificate would fail one.
    caller, engine = await _caller(checkout, {"payments": callee.port}, pool_max_idle=0)
    payments.start()
    checkout.start()
    statuses: list[int] = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.5
        async with ClientSession() as session:
            url = f"http://127.0.0.1:{caller.port}/x"
            while loop.time() < end and len(statuses) < 5000:
                async with session.get(url, headers={"Host": "payments"}) as response:
                    await response.read()
                    statuses.append(response.status)
        assert statuses.count(200) == len(statuses) > 50, set(statuses)
        assert payments.renewals == {"ok": payments.renewals["ok"], "failed": 0}
        assert checkout.renewals == {"ok": checkout.renewals["ok"], "failed": 0}
        assert min(payments.renewals["ok"], checkout.renewals["ok"]) >= 2
        assert (signer.refused, signer.signed >= 6) == (0, True)
        assert engine.pools.opened == len(statuses)
    finally:
        await payments.stop()
        await checkout.stop()
        await caller.stop(0)
        await callee.close()


async def test_a_node_asking_before_its_ca_listens_gets_its_certificate_once_it_does(
    nats: Callable[[], Awaitable[NatsBus]],
) -> None:
    # Nodes and `mesh ca serve` start together (`mesh up --secure`, a compose file): no
    # responder yet is asked again within the request's time, not a failed start.
    identity = Identity(await nats(), "payments", "natsmesh.local")
    asking = asyncio.create_task(identity.obtain(timeout=5.0))
    await asyncio.sleep(0.5)
    assert not asking.done()
    signer = await _ca(nats)
    await asyncio.wait_for(asking, 5.0)
    assert (signer.signed, identity.expires > NOW.timestamp()) == (1, True)
