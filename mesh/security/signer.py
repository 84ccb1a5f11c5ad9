"""The mesh CA's decision on one certificate request: sign for the subject's service, or refuse."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mesh import subjects
from mesh.errors import CertificateError, InvalidName
from mesh.messages import CertReply, CertRequest
from mesh.security import pki

_SUBJECT_PREFIX = subjects.CA_SIGN.removesuffix(">")


def answer(
    authority: pki.Authority,
    subject: str,
    data: bytes,
    *,
    trust_domain: str,
    now: datetime,
    lifetime: timedelta,
) -> CertReply:
    """The reply to one request received on `subject` (mesh.v1.ca.sign.<service>)."""
    try:
        service = subjects.check_name(subject.removeprefix(_SUBJECT_PREFIX))
        request = msgspec.json.decode(data, type=CertRequest)
        cert = sign(
            authority,
            request.csr.encode(),
            service=service,
            trust_domain=trust_domain,
            now=now,
            lifetime=lifetime,
        )
    except (InvalidName, msgspec.DecodeError, CertificateError) as exc:
        return CertReply(error=str(exc)[:512])
    return CertReply(cert=pki.cert_pem(cert).decode(), ca=pki.cert_pem(authority.cert).decode())


def sign(
    authority: pki.Authority,
    csr_pem: bytes,
    *,
    service: str,
    trust_domain: str,
    now: datetime,
    lifetime: timedelta,
) -> x509.Certificate:
    """A certificate for `service` (named by the request's subject, which NATS permissions
    guard) with its SPIFFE id; CertificateError when the request asks for anything else."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise CertificateError("not a PEM certificate signing request") from None
    if not csr.is_signature_valid:  # whoever asks must hold the key
        raise CertificateError("the request's signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateError("only P-256 (secp256r1) keys are signed")
    identity = pki.spiffe_id(trust_domain, service)
    for attribute in csr.subject:
        if attribute.oid != NameOID.COMMON_NAME or attribute.value != service:
            raise CertificateError(f"subject {csr.subject.rfc4514_string()!r} is not CN={service}")
    for name in _requested_names(csr):
        if name != identity:
            raise CertificateError(f"requests {name!r}, but this subject signs for {identity}")
    return pki.issue(
        authority, key, common_name=service, now=now, lifetime=lifetime, uris=[identity]
    )


def _requested_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """Every subject alternative name the request asks for, spelt as text."""
    try:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        name.value if isinstance(name, x509.UniformResourceIdentifier) else f"{name!r}"
        for name in names
    ]
