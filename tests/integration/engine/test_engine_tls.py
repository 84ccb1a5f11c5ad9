"""The gateway's HTTPS listener: beside the plain one, its certificate rotated under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from proxying import UpstreamFactory
from routes import directory
from waiting import until
from wire import Client, Peer, Upstream, get

from gateway.edge import EdgeListeners
from mesh import tls
from mesh.config import Settings
from mesh.engine import listener
from mesh.engine.engine import Engine
from mesh.metrics import Metrics, registry_for, render
from mesh.security import pki

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@dataclass
class Gateway:
    """An engine behind a plain and an HTTPS listener; its certificate files in `folder`."""

    edge: EdgeListeners
    metrics: Metrics
    upstream: Upstream
    authority: pki.Authority
    folder: Path
    client: ssl.SSLContext  # trusts the test CA (made once: each costs ~50 ms)

    @property
    def plain_port(self) -> int:
        return self.edge.listeners[0].port

    @property
    def tls_port(self) -> int:
        return self.edge.listeners[1].port

    def install(self, name: str) -> None:
        install(self.folder, self.authority, name)

    async def https(self) -> tuple[Client, str]:
        """A new HTTPS connection (a new handshake) and the certificate name it was shown."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.tls_port, ssl=self.client)
        subject = writer.get_extra_info("peercert")["subject"]
        name = dict(pair[0] for pair in subject)["commonName"]
        return Client(Peer(reader, writer, request=False)), name

    def reloads(self, result: str) -> float:
        text = render(registry_for(self.metrics)).decode()
        line = f'mesh_tls_reloads_total{{result="{result}"}} '
        return next(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


def install(folder: Path, authority: pki.Authority, name: str) -> None:
    """A new certificate named `name` and its key, each replaced in one rename."""
    key = pki.new_key()
    cert = pki.issue(
        authority, key.public_key(), common_name=name, now=NOW, lifetime=DAY, ips=["127.0.0.1"]
    )
    for final, data in (("server.key", pki.key_pem(key)), ("server.crt", pki.cert_pem(cert))):
        staged = folder / f".{final}.new"
        pki.write_private(staged, data)
        os.replace(staged, folder / final)


@pytest.fixture
async def gateway(tmp_path: Path, upstreams: UpstreamFactory) -> AsyncIterator[Gateway]:
    authority = pki.new_authority("test CA", NOW, DAY)
    pki.write_public(tmp_path / "ca.crt", pki.cert_pem(authority.cert))
    upstream = await upstreams()
    settings = Settings(
        gateway_listen="127.0.0.1:0",
        gateway_listen_tls="127.0.0.1:0",
        gateway_tls_cert=str(tmp_path / "server.crt"),
        gateway_tls_key=str(tmp_path / "server.key"),
        retry_attempts=0,
    )
    metrics = Metrics()
    engine = Engine(settings, directory({"svc": [upstream.port]}), metrics, strip_mesh_headers=True)
    install(tmp_path, authority, "first")
    edge = EdgeListeners(settings, engine, metrics, None)
    await edge.start()
    await edge.serve()
    client = tls.client_context(str(tmp_path / "ca.crt"))
    yield Gateway(edge, metrics, upstream, authority, tmp_path, client)
    await edge.stop(0)


async def test_https_beside_http_each_saying_its_scheme_upstream(gateway: Gateway) -> None:
    client, name = await gateway.https()
    assert name == "first"
    for claim in ("", "X-Forwarded-Proto: http\r\n"):  # the gateway knows better
        assert (await client.exchange(get(extra=claim))).status == 200
        assert gateway.upstream.requests()[-1].all("x-forwarded-proto") == ["https"]
    plain = await Client.connect(gateway.plain_port)
    assert (await plain.exchange(get())).status == 200
    assert gateway.upstream.requests()[-1].all("x-forwarded-proto") == ["http"]
    client.peer.close()
    plain.peer.close()


async def test_a_certificate_rotated_under_load_fails_no_request(gateway: Gateway) -> None:
    kept, _ = await gateway.https()  # open across the rotation: it must go on
    assert (await kept.exchange(get())).status == 200
    shown: list[str] = []
    failed: list[object] = []
    stop = asyncio.Event()

    async def load() -> None:
        for _ in range(200):  # bounded in count; `stop` ends it sooner
            if stop.is_set():
                return
            try:
                client, name = await gateway.https()
                answer = await client.exchange(get())
                client.peer.close()
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                failed.append(exc)
                continue
            shown.append(name)
            if answer.status != 200:
                failed.append(answer)

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await until(lambda: len(shown) >= 20, timeout=10)
        gateway.install("second")
        await until(lambda: "second" in shown, timeout=10)
        rotated = len(shown)
        await until(lambda: len(shown) >= rotated + 20, timeout=10)
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    assert failed == []
    assert shown[0] == "first"
    for _ in range(3):  # every handshake from now on
        assert (await gateway.https())[1] == "second"
    assert (await kept.exchange(get())).status == 200
    assert gateway.reloads("loaded") == 1
    kept.peer.close()


async def test_a_bad_certificate_is_refused_counted_and_the_old_one_serves(
    gateway: Gateway,
) -> None:
    other_key = pki.key_pem(pki.new_key())
    (gateway.folder / "server.key").write_bytes(other_key)  # not the certificate's key
    await until(lambda: gateway.reloads("failed") == 1, timeout=10)
    (gateway.folder / "server.crt").write_bytes(b"not a certificate")
    await until(lambda: gateway.reloads("failed") == 2, timeout=10)
    client, name = await gateway.https()
    assert name == "first"
    assert (await client.exchange(get())).status == 200
    client.peer.close()
    gateway.install("fixed")
    await until(lambda: gateway.reloads("loaded") == 1, timeout=10)
    assert (await gateway.https())[1] == "fixed"


@pytest.fixture
def quick_handshakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener, "TLS_HANDSHAKE_TIMEOUT", 0.3)


async def test_a_client_that_never_finishes_its_handshake_is_dropped(
    quick_handshakes: None, gateway: Gateway
) -> None:
    # No HTTP idle timeout sees a connection before its handshake: without this deadline
    # each silent client held a descriptor for a minute.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.tls_port)
    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionError):
            assert await reader.read() == b""
    writer.close()
