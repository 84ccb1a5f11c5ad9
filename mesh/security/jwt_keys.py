"""Keys that verify JWTs, parsed from PEM, secrets and JWKS documents (pure: bytes in, keys out).

Each key is bound to the one algorithm its route configures: an RSA key only verifies
RS256, a P-256 key ES256, a shared secret HS256. That binding, and the refusal of
anything that looks like a public key as an HMAC secret, is what defeats algorithm
confusion (a token signed with HS256 using the route's public key as the secret).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

Algorithm = Literal["HS256", "RS256", "ES256"]
VerifyKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | bytes

MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
MIN_RSA_BITS = 2048
_KTY = {"HS256": "oct", "RS256": "RSA", "ES256": "EC"}
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi")  # JWK members only private keys have
_ASYMMETRIC_MARKS = (b"-----BEGIN", b"ssh-rsa", b"ssh-ed25519", b"ecdsa-sha2-")


class KeyRing:
    """The keys of one route by key id (`kid`); a ring of one key without an id takes any."""

    __slots__ = ("algorithm", "keys")

    def __init__(self, algorithm: Algorithm, keys: Mapping[str | None, VerifyKey]) -> None:
        if not keys:
            raise ValueError(f"no key usable with {algorithm}")
        self.algorithm = algorithm
        self.keys = dict(keys)

    def find(self, kid: object) -> VerifyKey | None:
        if isinstance(kid, str) and kid in self.keys:
            return self.keys[kid]
        if len(self.keys) == 1 and (kid is None or None in self.keys):
            return next(iter(self.keys.values()))
        return None


def public_key(algorithm: Algorithm, pem: bytes) -> VerifyKey:
    """A PEM public key checked against the algorithm it will verify; ValueError if unfit."""
    if algorithm == "HS256":
        raise ValueError("HS256 takes a shared secret, not a public key")
    if b"PRIVATE KEY" in pem:
        raise ValueError("a private key: give the public key only")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    return _fit(algorithm, key)


def secret(data: bytes) -> bytes:
    """An HS256 shared secret from a file's bytes (one final line break dropped)."""
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    if any(mark in data for mark in _ASYMMETRIC_MARKS):
        raise ValueError("looks like a public or private key, not an HS256 secret")
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes")
    return data


def key_file(algorithm: Algorithm, data: bytes) -> KeyRing:
    """A key file: the shared secret for HS256, else a PEM public key."""
    key = secret(data) if algorithm == "HS256" else public_key(algorithm, data)
    return KeyRing(algorithm, {None: key})


def jwks(algorithm: Algorithm, data: bytes) -> KeyRing:
    """The keys of a JWKS document usable with `algorithm`, by `kid`; others are left out."""
    try:
        document = json.loads(data)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ValueError('not a JWKS document ({"keys": [...]})') from None
    keys: dict[str | None, VerifyKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != _KTY[algorithm]:
            continue
        if entry.get("alg", algorithm) != algorithm or entry.get("use", "sig") != "sig":
            continue
        if algorithm != "HS256" and any(name in entry for name in _PRIVATE):
            raise ValueError(f"key {entry.get('kid')!r} is a private key: publish public keys only")
        try:
            loaded = jwt.PyJWK(entry, algorithm).key
        except jwt.PyJWTError as exc:
            raise ValueError(f"key {entry.get('kid')!r}: {exc}") from None
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = (
            secret(loaded) if isinstance(loaded, bytes) else _fit(algorithm, loaded)
        )
    return KeyRing(algorithm, keys)


def _fit(algorithm: Algorithm, key: object) -> VerifyKey:
    if algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits: use at least {MIN_RSA_BITS}")
        return key
    if (
        algorithm == "ES256"
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    wanted = "an RSA public key" if algorithm == "RS256" else "a P-256 (EC) public key"
    raise ValueError(f"{algorithm} needs {wanted}")
