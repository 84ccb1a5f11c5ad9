"""Certificates: a mesh CA and the leaf certificates it signs, with SPIFFE identities."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.errors import ConfigError

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey

# Certificates start this long before `now`, so a peer whose clock runs a little behind
# does not refuse a certificate issued a moment ago.
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and the key that signs with it."""

    cert: x509.Certificate
    key: PrivateKey


def new_key() -> PrivateKey:
    # P-256: every TLS stack and nats-server speak it, and it signs far faster than RSA.
    return ec.generate_private_key(ec.SECP256R1())


def new_authority(name: str, now: datetime, lifetime: timedelta) -> Authority:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key(), now, lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    authority: Authority,
    public_key: PublicKey,
    *,
    common_name: str,
    now: datetime,
    lifetime: timedelta,
    uris: Iterable[str] = (),
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    server: bool = True,
    client: bool = True,
) -> x509.Certificate:
    """A leaf certificate for `public_key`, valid for the given names and uses."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    names += [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    if not names or not usages:
        raise ValueError("a leaf certificate needs at least one name and one use")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    # Never outlive the CA: a peer would refuse the chain after the CA expires anyway.
    end = min(now + lifetime, authority.cert.not_valid_after_utc)
    return (
        _builder(subject, authority.cert.subject, public_key, now, end - now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )


def request(key: PrivateKey, *, common_name: str, uris: Iterable[str]) -> bytes:
    """A certificate signing request (PEM) for `key`, asking for these names."""
    names = [x509.UniformResourceIdentifier(uri) for uri in uris]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def spiffe_id(trust_domain: str, service: str) -> str:
    """The identity a service's certificate carries, as Istio and Linkerd spell it."""
    return f"spiffe://{trust_domain}/ns/default/sa/{service}"


def service_of(identity: str, trust_domain: str) -> str | None:
    """The service a SPIFFE identity names in `trust_domain`, else None."""
    prefix = spiffe_id(trust_domain, "")
    if not identity.startswith(prefix):
        return None
    service = identity[len(prefix) :]
    return service if service and "/" not in service else None


def uris_of(cert: x509.Certificate) -> list[str]:
    """The URI SANs of a certificate (where SPIFFE identities live)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_folder(path: Path) -> None:
    """`path` and its parents; one that cannot be made is a ConfigError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only: mode 0600 from the first byte on."""
    make_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def write_public(path: Path, data: bytes) -> None:
    make_folder(path.parent)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write {exc.filename or path}: {exc.strerror}")


def load_authority(cert_path: Path, key_path: Path) -> Authority:
    """A CA from its PEM files; a missing or malformed file is a ConfigError naming it."""
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path))
    except ValueError as exc:
        raise ConfigError(f"{cert_path}: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(_read(key_path), password=None)
    except ValueError as exc:
        raise ConfigError(f"{key_path}: not a PEM private key ({exc})") from None
    if not isinstance(key, PrivateKey) or key.public_key() != cert.public_key():
        raise ConfigError(f"{key_path}: not the key of {cert_path}")
    return Authority(cert, key)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: PublicKey, now: datetime, life: timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + life)
    )
