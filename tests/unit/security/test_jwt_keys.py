"""mesh.security.jwt_keys: every key is bound to its route's algorithm; unfit keys are refused."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from factories import HS_SECRET, ec_key, public_pem, rsa_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mesh.security import jwt_keys

RSA_JWK = json.loads(RSAAlgorithm.to_jwk(rsa_key().public_key()))
EC_JWK = json.loads(ECAlgorithm.to_jwk(ec_key().public_key()))
OCT_JWK = {"kty": "oct", "k": "c" * 43, "kid": "shared"}
PRIVATE_PEM = rsa_key().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


def _jwks(*keys: object) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


UNFIT = {
    "hs-secret-too-short": ("HS256", b"short\n", "at least 32 bytes"),
    "hs-secret-that-is-a-public-key": ("HS256", public_pem(rsa_key()), "not an HS256 secret"),
    "rsa-key-for-es256": ("ES256", public_pem(rsa_key()), "P-256"),
    "ec-key-for-rs256": ("RS256", public_pem(ec_key()), "RSA public key"),
    "private-key": ("RS256", PRIVATE_PEM, "a private key"),
    "not-pem": ("RS256", b"hello", "not a PEM public key"),
}


@pytest.mark.parametrize(("algorithm", "data", "reason"), UNFIT.values(), ids=UNFIT.keys())
def test_an_unfit_key_file_is_refused(
    algorithm: jwt_keys.Algorithm, data: bytes, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        jwt_keys.key_file(algorithm, data)


def test_a_secret_file_may_end_with_a_line_break() -> None:
    ring = jwt_keys.key_file("HS256", HS_SECRET + b"\n")
    assert ring.find(None) == HS_SECRET


def test_a_jwks_keeps_only_the_keys_of_the_route_algorithm() -> None:
    document = _jwks(
        {**RSA_JWK, "kid": "rsa"},
        {**EC_JWK, "kid": "ec"},
        OCT_JWK,
        {**RSA_JWK, "kid": "enc", "use": "enc"},
        {**RSA_JWK, "kid": "ps", "alg": "PS256"},
    )
    assert set(jwt_keys.jwks("RS256", document).keys) == {"rsa"}
    assert set(jwt_keys.jwks("ES256", document).keys) == {"ec"}
    assert set(jwt_keys.jwks("HS256", document).keys) == {"shared"}


BAD_JWKS = {
    "not-json": (b"{", "not a JWKS document"),
    "no-keys": (b'{"k": []}', "not a JWKS document"),
    "no-usable-key": (_jwks(EC_JWK), "no key usable with RS256"),
    "a-private-key": (_jwks({**RSA_JWK, "d": "AQAB"}), "private key"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_JWKS.values(), ids=BAD_JWKS.keys())
def test_an_unusable_jwks_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        jwt_keys.jwks("RS256", data)
