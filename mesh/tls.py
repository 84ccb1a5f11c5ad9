"""TLS contexts for listeners and clients, from PEM files, and reloading them in place."""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from cryptography import x509

from mesh.errors import ConfigError


class PeerCheck(NamedTuple):
    """How to dial an instance's inbound listener: this context, and the identity it must show."""

    context: ssl.SSLContext
    identity: str


def server_context(
    cert: str, key: str, *, client_ca: str | None = None, require_client: bool = False
) -> ssl.SSLContext:
    """A listener's context; with `client_ca`, clients may (or must) show a certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(context, cert, key)
    if client_ca is not None:
        _load_ca(context, client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return context


def client_context(
    ca: str | None, *, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client's context: verifies the server against `ca` (system roots when None)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load_ca(context, ca)
    if cert is not None:
        load_chain(context, cert, key)
    return context


def check_current(cert: str, now: float, setting: str) -> None:
    """Refuse a certificate file that is expired or not valid yet, naming `setting`."""
    try:
        with open(cert, "rb") as file:
            parsed = x509.load_pem_x509_certificate(file.read())
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {cert}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{setting}: {cert} is not a PEM certificate ({exc})") from None
    start, end = parsed.not_valid_before_utc, parsed.not_valid_after_utc
    if now > end.timestamp():
        raise ConfigError(f"{setting}: {cert} expired on {end:%Y-%m-%d %H:%M} UTC")
    if now < start.timestamp():
        raise ConfigError(f"{setting}: {cert} is not valid before {start:%Y-%m-%d %H:%M} UTC")


def load_chain(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load (or replace) the context's certificate: new handshakes use it, open ones go on.

    A pair that does not load leaves the context as it was: it is tried on a scratch
    context first, as OpenSSL, given a key that does not match the new certificate,
    would leave a live context unable to complete any handshake.
    """
    # Checked first: ssl's own FileNotFoundError does not say which file it missed.
    for what, path in (("certificate", cert), ("key", key)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"TLS {what} {path}: {exc.strerror}") from None
    try:
        ssl.SSLContext(context.protocol).load_cert_chain(cert, key)
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS certificate {cert} or its key is unusable: {exc}") from None


def load_chain_pem(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """`load_chain` from PEM bytes: the ssl module reads files only, so they pass through a
    private directory (0700, key 0600) that is gone when this returns."""
    with tempfile.TemporaryDirectory(prefix="mesh-tls-") as folder:
        cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        load_chain(context, str(cert_path), str(key_path))


def peer_uris(peercert: Mapping[str, object] | None) -> list[str]:
    """The URI SANs of a verified peer, from `getpeercert()` (where SPIFFE ids live)."""
    names = peercert.get("subjectAltName", ()) if peercert else ()
    assert isinstance(names, tuple)
    return [value for kind, value in names if kind == "URI"]


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise ConfigError(f"TLS CA file missing: {ca}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS CA file {ca} is unusable: {exc}") from None
