"""The mesh CA: what it signs, for how long, and the identities certificates carry."""

from __future__ import annotations

import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from mesh.errors import ConfigError
from mesh.security import pki

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def authority() -> pki.Authority:
    return pki.new_authority("natsmesh test CA", NOW, 30 * DAY)


def test_a_leaf_is_signed_by_the_authority_and_carries_its_names(authority: pki.Authority) -> None:
    key = pki.new_key()
    uri = pki.spiffe_id("mesh.local", "payments")
    cert = pki.issue(
        authority,
        key.public_key(),
        common_name="payments",
        now=NOW,
        lifetime=DAY,
        uris=[uri],
        dns=["localhost"],
        ips=["127.0.0.1"],
    )
    cert.verify_directly_issued_by(authority.cert)
    assert pki.uris_of(cert) == [uri]
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + DAY
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False


def test_a_leaf_never_outlives_its_authority(authority: pki.Authority) -> None:
    cert = pki.issue(
        authority,
        pki.new_key().public_key(),
        common_name="x",
        now=NOW,
        lifetime=90 * DAY,
        dns=["x"],
    )
    assert cert.not_valid_after_utc == authority.cert.not_valid_after_utc


def test_a_leaf_without_names_or_uses_is_refused(authority: pki.Authority) -> None:
    with pytest.raises(ValueError, match="at least one name"):
        pki.issue(authority, pki.new_key().public_key(), common_name="x", now=NOW, lifetime=DAY)
    with pytest.raises(ValueError, match="at least one name"):
        pki.issue(
            authority,
            pki.new_key().public_key(),
            common_name="x",
            now=NOW,
            lifetime=DAY,
            dns=["x"],
            server=False,
            client=False,
        )


@pytest.mark.parametrize(
    ("identity", "service"),
    [
        ("spiffe://mesh.local/ns/default/sa/payments", "payments"),
        ("spiffe://other.domain/ns/default/sa/payments", None),
        ("spiffe://mesh.local/ns/default/sa/", None),
        ("spiffe://mesh.local/ns/default/sa/a/b", None),
        ("spiffe://mesh.local/ns/other/sa/payments", None),
        ("https://mesh.local/ns/default/sa/payments", None),
    ],
)
def test_service_of_an_identity(identity: str, service: str | None) -> None:
    assert pki.service_of(identity, "mesh.local") == service


def test_files_round_trip_and_the_key_is_private(tmp_path: Path, authority: pki.Authority) -> None:
    cert_path, key_path = tmp_path / "ca.crt", tmp_path / "ca.key"
    pki.write_public(cert_path, pki.cert_pem(authority.cert))
    pki.write_private(key_path, pki.key_pem(authority.key))
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    loaded = pki.load_authority(cert_path, key_path)
    assert loaded.cert == authority.cert
    # The written CA is one that Python's TLS stack accepts as a trust anchor.
    ssl.create_default_context(cafile=str(cert_path))


def test_loading_names_the_bad_file(tmp_path: Path, authority: pki.Authority) -> None:
    cert_path, key_path = tmp_path / "ca.crt", tmp_path / "ca.key"
    pki.write_public(cert_path, pki.cert_pem(authority.cert))
    with pytest.raises(ConfigError, match=r"ca\.key"):
        pki.load_authority(cert_path, key_path)
    pki.write_private(key_path, pki.key_pem(pki.new_key()))
    with pytest.raises(ConfigError, match="not the key of"):
        pki.load_authority(cert_path, key_path)
    cert_path.write_text("garbage")
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        pki.load_authority(cert_path, key_path)
