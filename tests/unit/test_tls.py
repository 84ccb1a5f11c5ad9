"""TLS contexts from the mesh CA's files: a real handshake over loopback, and reloading."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mesh import tls
from mesh.errors import ConfigError
from mesh.security import pki

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def _leaf(tmp_path: Path, authority: pki.Authority, name: str) -> tuple[str, str]:
    key = pki.new_key()
    cert = pki.issue(
        authority, key.public_key(), common_name=name, now=NOW, lifetime=DAY, ips=["127.0.0.1"]
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    pki.write_public(cert_path, pki.cert_pem(cert))
    pki.write_private(key_path, pki.key_pem(key))
    return str(cert_path), str(key_path)


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    peers: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        peers.append(repr(peer).encode())
        writer.close()

    server_ = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = server_.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        await reader.read()
        writer.close()
        for _ in range(100):
            if peers:
                break
            await asyncio.sleep(0.01)
    finally:
        server_.close()
        await server_.wait_closed()
    return peers[0]


async def test_mutual_tls_with_the_mesh_ca(tmp_path: Path) -> None:
    authority = pki.new_authority("test CA", NOW, DAY)
    ca = tmp_path / "ca.crt"
    pki.write_public(ca, pki.cert_pem(authority.cert))
    server = tls.server_context(
        *_leaf(tmp_path, authority, "server"), client_ca=str(ca), require_client=True
    )
    cert, key = _leaf(tmp_path, authority, "client")
    peer = await _handshake(server, tls.client_context(str(ca), cert=cert, key=key))
    assert b"client" in peer


async def test_a_client_of_another_ca_is_refused(tmp_path: Path) -> None:
    authority = pki.new_authority("test CA", NOW, DAY)
    stranger = pki.new_authority("stranger CA", NOW, DAY)
    ca = tmp_path / "ca.crt"
    pki.write_public(ca, pki.cert_pem(authority.cert))
    server = tls.server_context(
        *_leaf(tmp_path, authority, "server"), client_ca=str(ca), require_client=True
    )
    cert, key = _leaf(tmp_path, stranger, "client")
    with pytest.raises((ssl.SSLError, ConnectionError, IndexError)):
        await _handshake(server, tls.client_context(str(ca), cert=cert, key=key))


def test_missing_files_are_config_errors_naming_them(tmp_path: Path) -> None:
    missing = str(tmp_path / "no.crt")
    with pytest.raises(ConfigError, match=f"^TLS certificate {missing}: No such file"):
        tls.server_context(missing, str(tmp_path / "no.key"))
    authority = pki.new_authority("test CA", datetime.now(UTC), timedelta(days=1))
    cert, _ = _leaf(tmp_path, authority, "server")
    missing = str(tmp_path / "no.key")
    with pytest.raises(ConfigError, match=f"^TLS key {missing}: No such file"):
        tls.server_context(cert, missing)
    with pytest.raises(ConfigError, match="CA file missing"):
        tls.client_context(str(tmp_path / "no-ca.crt"))


async def test_a_pair_that_does_not_match_leaves_the_context_serving_the_old_one(
    tmp_path: Path,
) -> None:
    # Loaded straight into a live context, a key of another certificate left it unable to
    # complete any handshake (OpenSSL drops the certificate when the key does not match).
    authority = pki.new_authority("test CA", NOW, DAY)
    ca = tmp_path / "ca.crt"
    pki.write_public(ca, pki.cert_pem(authority.cert))
    old_cert, old_key = _leaf(tmp_path, authority, "old")
    new_cert, _ = _leaf(tmp_path, authority, "new")
    server = tls.server_context(old_cert, old_key)
    with pytest.raises(ConfigError, match="unusable"):
        tls.load_chain(server, new_cert, old_key)
    client = tls.client_context(str(ca))
    client.check_hostname = False  # the leaves name 127.0.0.1; the handshake is the point
    assert await _handshake(server, client) == b"None"  # completed: the client sent no cert
