"""mesh.security.jwt_tokens: which tokens prove a consumer, and the reason for every other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from factories import AUDIENCE, HS_SECRET, ISSUER, ec_key, public_pem, rsa_key, token
from jwt.algorithms import RSAAlgorithm

from mesh.security import jwt_keys
from mesh.security.jwt_keys import KeyRing
from mesh.security.jwt_tokens import InvalidToken, TokenRules, verify

NOW = 1_700_000_000.0
SKEW = 30.0
RULES = TokenRules(issuer=ISSUER, audience=(AUDIENCE,), clock_skew=SKEW)
RS = jwt_keys.key_file("RS256", public_pem(rsa_key()))
ES = jwt_keys.key_file("ES256", public_pem(ec_key()))
HS = jwt_keys.key_file("HS256", HS_SECRET)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def forged(header: dict[str, Any], secret: bytes = b"", **claims: Any) -> bytes:
    """A token made by hand, HMAC-signed with `secret` (none: no signature at all)."""
    body = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 60, **claims}
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(body).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest() if secret else b""
    return signing_input + b"." + _b64(signature)


def tampered(original: bytes, **claims: Any) -> bytes:
    """`original` with its payload swapped for another, the signature kept."""
    header, _, signature = original.split(b".")
    body = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 60, **claims}
    return header + b"." + _b64(json.dumps(body).encode()) + b"." + signature


def resigned_badly(original: bytes) -> bytes:
    head, body, signature = original.split(b".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))
    flipped[10] ^= 0xFF
    return head + b"." + body + b"." + _b64(bytes(flipped))


VALID = {
    "rs256": (token(now=NOW), RS),
    "es256": (token(ec_key(), "ES256", now=NOW), ES),
    "hs256": (token(HS_SECRET, "HS256", now=NOW), HS),
    "expires-within-the-skew": (token(now=NOW, exp=int(NOW - SKEW)), RS),
    "starts-within-the-skew": (token(now=NOW, nbf=int(NOW + SKEW)), RS),
    "one-of-several-audiences": (token(now=NOW, aud=["other", AUDIENCE]), RS),
}


@pytest.mark.parametrize(("raw", "keys"), VALID.values(), ids=VALID.keys())
def test_a_valid_token_names_its_consumer(raw: bytes, keys: KeyRing) -> None:
    assert verify(raw, keys, RULES, NOW) == "alice"


REFUSED = {
    "expired": (token(now=NOW, exp=int(NOW - SKEW - 1)), RS, "token expired"),
    "not-yet-valid": (token(now=NOW, nbf=int(NOW + SKEW + 1)), RS, "token not valid yet"),
    "wrong-audience": (token(now=NOW, aud="other.example.com"), RS, "wrong audience"),
    "no-audience": (token(now=NOW, aud=None), RS, "no aud claim"),
    "wrong-issuer": (token(now=NOW, iss="https://evil.example.com"), RS, "wrong issuer"),
    "no-issuer": (token(now=NOW, iss=None), RS, "no iss claim"),
    # PyJWT 2.10.0 matched a string issuer as a container (CVE-2024-53861): never a part.
    "issuer-a-part-of-ours": (token(now=NOW, iss="https://login"), RS, "wrong issuer"),
    "no-expiry": (token(now=NOW, exp=None), RS, "no exp claim"),
    "expiry-not-a-time": (token(now=NOW, exp="soon"), RS, "exp is not a time"),
    "alg-none": (forged({"alg": "none", "typ": "JWT"}), RS, "token algorithm 'none' is not RS256"),
    "alg-none-on-hs": (forged({"alg": "none"}), HS, "token algorithm 'none' is not HS256"),
    # The classic confusion: the route's public key, which anyone may read, as an HS secret.
    "hs-signed-with-the-rs-public-key": (
        forged({"alg": "HS256"}, public_pem(rsa_key())),
        RS,
        "token algorithm 'HS256' is not RS256",
    ),
    "rs-token-on-an-es-route": (token(now=NOW), ES, "token algorithm 'RS256' is not ES256"),
    "bad-signature-rs": (resigned_badly(token(now=NOW)), RS, "bad signature"),
    "bad-signature-hs": (token(b"t" * 32, "HS256", now=NOW), HS, "bad signature"),
    "tampered-payload": (tampered(token(now=NOW)), RS, "bad signature"),
    "tampered-payload-es": (tampered(token(ec_key(), "ES256", now=NOW)), ES, "bad signature"),
    "not-a-token": (b"abc.def", RS, "malformed token"),
    "consumer-with-a-line-break": (token(now=NOW, sub="a\r\nx-mesh-x: 1"), RS, "sub claim"),
    "consumer-not-text": (token(now=NOW, sub=None, client=7), RS, "sub claim"),
}


@pytest.mark.parametrize(("raw", "keys", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_a_token_that_proves_nothing_is_refused_with_its_reason(
    raw: bytes, keys: KeyRing, reason: str
) -> None:
    with pytest.raises(InvalidToken) as refused:
        verify(raw, keys, RULES, NOW)
    assert reason in str(refused.value)


def test_the_consumer_comes_from_the_configured_claim() -> None:
    rules = TokenRules(issuer=ISSUER, audience=(AUDIENCE,), consumer_claim="client_id")
    assert verify(token(now=NOW, client_id="billing"), RS, rules, NOW) == "billing"


def test_a_jwks_picks_the_key_by_kid_and_refuses_an_unknown_kid() -> None:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key().public_key()))
    keys = [{**jwk, "kid": "k1"}, {**jwk, "kid": "k2"}]
    ring = jwt_keys.jwks("RS256", json.dumps({"keys": keys}).encode())
    assert verify(_with_kid("k2"), ring, RULES, NOW) == "alice"
    with pytest.raises(InvalidToken, match="kid"):
        verify(_with_kid("k9"), ring, RULES, NOW)


def _with_kid(kid: str) -> bytes:
    claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 60}
    return jwt.encode(claims, rsa_key(), algorithm="RS256", headers={"kid": kid}).encode()
