"""The mesh CA signs only for the service its request subject names, for the set lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mesh import subjects
from mesh.messages import CertReply, CertRequest
from mesh.security import pki, signer

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
DOMAIN = "natsmesh.local"


@pytest.fixture(scope="module")
def authority() -> pki.Authority:
    return pki.new_authority("signer test CA", NOW, 30 * DAY)


def _ask(
    authority: pki.Authority, subject: str, csr: bytes, lifetime: timedelta = DAY
) -> CertReply:
    data = msgspec.json.encode(CertRequest(csr=csr.decode()))
    return signer.answer(authority, subject, data, trust_domain=DOMAIN, now=NOW, lifetime=lifetime)


def _csr(key: object, *names: x509.GeneralName, cn: str = "payments") -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(pki.serialization.Encoding.PEM)


@pytest.mark.parametrize("lifetime", [timedelta(seconds=3), DAY, 7 * DAY])
def test_signs_the_subject_services_identity_for_the_set_lifetime(
    authority: pki.Authority, lifetime: timedelta
) -> None:
    key = pki.new_key()
    csr = pki.request(key, common_name="payments", uris=[pki.spiffe_id(DOMAIN, "payments")])
    reply = _ask(authority, subjects.ca_sign("payments"), csr, lifetime)
    assert not reply.error
    cert = x509.load_pem_x509_certificate(reply.cert.encode())
    assert pki.uris_of(cert) == ["spiffe://natsmesh.local/ns/default/sa/payments"]
    assert cert.public_key() == key.public_key()
    assert cert.not_valid_after_utc == NOW + lifetime
    assert reply.ca.encode() == pki.cert_pem(authority.cert)
    cert.verify_directly_issued_by(authority.cert)


def test_a_request_without_names_gets_the_subjects_identity(authority: pki.Authority) -> None:
    reply = _ask(authority, subjects.ca_sign("payments"), _csr(pki.new_key()))
    cert = x509.load_pem_x509_certificate(reply.cert.encode())
    assert pki.uris_of(cert) == [pki.spiffe_id(DOMAIN, "payments")]


@pytest.mark.parametrize(
    ("subject", "csr_names", "cn", "why"),
    [
        # An agent of payments asking on its own subject for checkout's identity.
        ("payments", [pki.spiffe_id(DOMAIN, "checkout")], "payments", "requests"),
        # ... or for payments' identity in another trust domain.
        ("payments", [pki.spiffe_id("evil.example", "payments")], "payments", "requests"),
        ("payments", [], "checkout", "is not CN=payments"),
        ("payments", ["spiffe://natsmesh.local/ns/default/sa/payments/x"], "payments", "requests"),
    ],
)
def test_names_that_disagree_with_the_subject_are_refused(
    authority: pki.Authority, subject: str, csr_names: list[str], cn: str, why: str
) -> None:
    names = [x509.UniformResourceIdentifier(uri) for uri in csr_names]
    reply = _ask(authority, subjects.ca_sign(subject), _csr(pki.new_key(), *names, cn=cn))
    assert why in reply.error
    assert not reply.cert


def test_dns_names_and_foreign_keys_are_refused(authority: pki.Authority) -> None:
    dns = _csr(pki.new_key(), x509.DNSName("payments.example.com"))
    assert "requests" in _ask(authority, subjects.ca_sign("payments"), dns).error
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "P-256" in _ask(authority, subjects.ca_sign("payments"), _csr(rsa_key)).error
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert "P-256" in _ask(authority, subjects.ca_sign("payments"), _csr(p384)).error


def test_garbage_and_bad_subjects_are_refused(authority: pki.Authority) -> None:
    good = _csr(pki.new_key())
    assert _ask(authority, "mesh.v1.ca.sign.pay.ments", good).error
    reply = signer.answer(
        authority, subjects.ca_sign("payments"), b"{", trust_domain=DOMAIN, now=NOW, lifetime=DAY
    )
    assert reply.error
    assert "not a PEM" in _ask(authority, subjects.ca_sign("payments"), b"junk").error


def test_a_request_whose_signature_does_not_verify_is_refused(authority: pki.Authority) -> None:
    pem = _csr(pki.new_key())
    csr = x509.load_pem_x509_csr(pem)
    der = bytearray(csr.public_bytes(pki.serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(pki.serialization.Encoding.PEM)
    assert "signature" in _ask(authority, subjects.ca_sign("payments"), tampered).error
