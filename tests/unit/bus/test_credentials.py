"""NATS credentials from settings: what nats-py is given, what is refused before connecting."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
import pytest

from mesh.bus import NatsBus
from mesh.bus.credentials import connect_credentials, guarded, refusal
from mesh.config import Settings
from mesh.errors import BusRefused, BusUnavailable, ConfigError
from mesh.node.ports import free_port
from mesh.security import pki

NOW = datetime.now(UTC)


def client_files(tmp_path: Path, *, start: datetime = NOW, days: float = 1) -> dict[str, str]:
    authority = pki.new_authority("test CA", NOW - timedelta(days=10), timedelta(days=30))
    key = pki.new_key()
    cert = pki.issue(
        authority,
        key.public_key(),
        common_name="c",
        now=start,
        lifetime=timedelta(days=days),
        dns=["c"],
        server=False,
    )
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c.pem", "key": tmp_path / "c-key.pem"}
    pki.write_public(files["ca"], pki.cert_pem(authority.cert))
    pki.write_public(files["cert"], pki.cert_pem(cert))
    pki.write_private(files["key"], pki.key_pem(key))
    return {name: str(path) for name, path in files.items()}


def test_each_credential_reaches_nats_py_as_its_option(tmp_path: Path) -> None:
    seed, creds = tmp_path / "u.nk", tmp_path / "u.creds"
    seed.write_text("SU...")
    creds.write_text("-----BEGIN NATS USER JWT-----")
    files = client_files(tmp_path)
    settings = Settings(
        nats_user="u",
        nats_password="pw",  # type: ignore[arg-type]
        nats_token="tk",  # type: ignore[arg-type]
        nats_nkey_seed=str(seed),
        nats_creds=str(creds),
        nats_tls_ca=files["ca"],
        nats_tls_cert=files["cert"],
        nats_tls_key=files["key"],
    )
    options = connect_credentials(settings)
    assert isinstance(options.pop("tls"), ssl.SSLContext)
    assert options == {
        "user": "u",
        "password": "pw",  # the secret itself, not its '**********'
        "token": "tk",
        "nkeys_seed": str(seed),
        "user_credentials": str(creds),
        "tls_handshake_first": True,  # never a plain-text INFO a downgrade could forge
    }
    assert connect_credentials(Settings()) == {}
    tls_url = Settings(nats_url="nats://a:1, TLS://b:2")
    assert connect_credentials(tls_url) == {"tls_handshake_first": True}


@pytest.mark.parametrize("setting", ["nats_nkey_seed", "nats_creds", "nats_tls_cert"])
def test_a_missing_credential_file_is_refused_before_connecting(
    setting: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=f"MESH_{setting.upper()}: cannot read "):
        NatsBus(Settings(**{setting: str(tmp_path / "absent")}), name="t")


def test_an_expired_or_early_client_certificate_is_refused_before_connecting(
    tmp_path: Path,
) -> None:
    expired = client_files(tmp_path, start=NOW - timedelta(days=3))
    with pytest.raises(ConfigError, match=r"MESH_NATS_TLS_CERT: .*c\.pem expired on "):
        NatsBus(Settings(nats_tls_cert=expired["cert"], nats_tls_key=expired["key"]), name="t")
    early = client_files(tmp_path, start=NOW + timedelta(days=2))
    with pytest.raises(ConfigError, match="is not valid before"):
        NatsBus(Settings(nats_tls_cert=early["cert"], nats_tls_key=early["key"]), name="t")


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (nats.errors.AuthorizationError(), "NATS refused the credentials"),
        (nats.errors.Error("nats: 'Authorization Violation'"), "NATS refused the credentials"),
        (ssl.SSLCertVerificationError(1, "x"), "server's certificate is not trusted"),
        (ssl.SSLError(1, "TLSV13_ALERT_CERTIFICATE_REQUIRED"), "refused the TLS handshake"),
        (ConnectionRefusedError(111, "refused"), None),  # unreachable: retried, not refused
        (nats.errors.Error("nats: timeout"), None),
    ],
)
def test_refusals_are_told_from_outages(error: Exception, cause: str | None) -> None:
    found = refusal(error)
    if cause is None:
        assert found is None
    else:
        assert cause in (found or "")


async def test_an_unreachable_server_is_named_without_the_urls_secret() -> None:
    url = f"nats://operator:url-secret@127.0.0.1:{free_port()}"
    bus = NatsBus(Settings(nats_url=url), name="t")
    try:
        with pytest.raises(BusUnavailable) as caught:
            await bus.start(wait=0.3)
    finally:
        await bus.close()
    assert "url-secret" not in str(caught.value)
    assert "nats://***@127.0.0.1:" in str(caught.value)


async def test_a_refused_publish_ends_the_work_waiting_on_its_answer() -> None:
    """nats-py only reports the refusal (lower-cased) to the error callback; the JetStream
    answer the work waits for never comes."""
    bus = NatsBus(Settings(), name="t")
    waited = asyncio.Event()

    async def forever() -> int:
        waited.set()
        await asyncio.Event().wait()
        return 1

    async def refuse() -> None:
        await waited.wait()
        await bus._on_error(
            nats.errors.Error('nats: permissions violation for publish to "$js.api.other"')
        )
        await bus._on_error(
            nats.errors.Error('nats: permissions violation for publish to "$js.api.stream.x"')
        )

    refusing = asyncio.create_task(refuse())
    with pytest.raises(BusRefused, match=r'publish to "\$js\.api\.stream\.x"'):
        await asyncio.wait_for(bus.unless_refused("$JS.API.STREAM.X", forever()), 2)
    await refusing

    async def answered() -> int:
        return 7

    assert await bus.unless_refused("$JS.API.STREAM.X", answered()) == 7


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, False),
        ({"nats_token": "t"}, False),  # a login, sent in clear
        ({"nats_tls_ca": "ca.pem"}, False),  # TLS, but anyone may log in
        ({"nats_url": "tls://h:1"}, False),
        ({"nats_url": "tls://tok@h:1"}, True),
        ({"nats_user": "u", "nats_tls_ca": "ca.pem"}, True),
        ({"nats_nkey_seed": "ca.nk", "nats_tls_cert": "c.pem", "nats_tls_key": "k.pem"}, True),
    ],
)
def test_guarded_means_a_login_over_tls(settings: dict[str, str], expected: bool) -> None:
    """What `mesh ca serve` checks before warning that anyone may ask it for a certificate."""
    assert guarded(Settings(**settings)) is expected  # type: ignore[arg-type]


def test_a_login_in_the_urls_serves_every_node_the_client_moves_to() -> None:
    # nats-py logs in to a server with its own URL's login: one learned from the cluster
    # has none, so the login goes to nats-py as options, for every server.
    both = Settings(nats_url="nats://u:p%40ss@a:4222, nats://u:p%40ss@b:4222,nats://c:4222")
    assert connect_credentials(both) == {"user": "u", "password": "p@ss"}
    assert connect_credentials(Settings(nats_url="nats://tk@a:4222")) == {"token": "tk"}
    given = Settings(nats_url="nats://u:p@a:4222", nats_user="v", nats_password="q")  # type: ignore[arg-type]
    assert connect_credentials(given) == {"user": "v", "password": "q"}  # the setting wins
    with pytest.raises(ConfigError, match="its URLs log in differently"):
        connect_credentials(Settings(nats_url="nats://u:p@a:4222,nats://v:q@b:4222"))
