"""mesh.policy.auth: what a route's `auth` may say, and the secrets it must never hold."""

from __future__ import annotations

from typing import Any

import pytest
from factories import AUDIENCE, ISSUER, ec_key, public_pem, rsa_key

from mesh.policy.auth import ApiKeyAuth, JwtAuth
from mesh.policy.decode import HIDDEN, parse
from mesh.policy.problem import Problem
from mesh.policy.route import Route
from mesh.security.api_keys import hash_key

DIGEST = hash_key(b"k-alice")


def _route(auth: dict[str, Any], **more: Any) -> Route | Problem:
    return parse(
        {"kind": "Route", "name": "r", "to": [{"service": "a"}], "auth": auth, **more}, None
    )


def _api_keys(**more: Any) -> dict[str, Any]:
    return {"type": "api_key", "keys": [{"consumer": "alice", "sha256": DIGEST}], **more}


def _jwt(**more: Any) -> dict[str, Any]:
    return {
        "type": "jwt",
        "algorithm": "RS256",
        "issuer": ISSUER,
        "audience": [AUDIENCE],
        "public_key": public_pem(rsa_key()).decode(),
        **more,
    }


ACCEPTED = {
    "api-key": (_api_keys(), ApiKeyAuth),
    "api-key-in-query-allowed-for-alice": (_api_keys(query="key", allow=["alice"]), ApiKeyAuth),
    "jwt-inline-rs256": (_jwt(), JwtAuth),
    "jwt-inline-es256": (
        _jwt(algorithm="ES256", public_key=public_pem(ec_key()).decode()),
        JwtAuth,
    ),
    "jwt-hs256-secret-file": (_jwt(algorithm="HS256", public_key=None, key_file="/etc/s"), JwtAuth),
    "jwt-jwks": (_jwt(public_key=None, jwks_file="/etc/mesh/jwks.json", clock_skew="5s"), JwtAuth),
}


@pytest.mark.parametrize(("auth", "kind"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_auth(auth: dict[str, Any], kind: type) -> None:
    route = _route(auth)
    assert isinstance(route, Route), str(route)
    assert isinstance(route.auth, kind)


REFUSED = {
    "plain-key": (
        _api_keys(keys=[{"consumer": "a", "sha256": "k-alice"}]),
        "auth.keys[0].sha256",
        "SHA-256",
    ),
    "upper-case-digest": (
        _api_keys(keys=[{"consumer": "a", "sha256": DIGEST.upper()}]),
        "auth.keys[0].sha256",
        "lower-case hex",
    ),
    "a-key-field": (
        _api_keys(keys=[{"consumer": "a", "key": "k-alice"}]),
        "auth.keys[0].key",
        "unknown field",
    ),
    "same-key-twice": (
        _api_keys(keys=[{"consumer": "a", "sha256": DIGEST}, {"consumer": "b", "sha256": DIGEST}]),
        "auth.keys",
        "listed twice",
    ),
    "framing-header": (_api_keys(header="Content-Length"), "auth.header", "cannot carry a key"),
    "mesh-header": (_api_keys(header="x-mesh-key"), "auth.header", "cannot carry a key"),
    "allow-without-key": (_api_keys(allow=["bob"]), "auth.allow", "no key belongs to bob"),
    "no-keys": (_api_keys(keys=[]), "auth.keys", "expected a list of 1 to 256"),
    "hs256-secret-inline": (
        _jwt(algorithm="HS256", public_key="s" * 40),
        "auth.public_key",
        "never goes in a policy",
    ),
    "private-key-inline": (
        _jwt(public_key="-----BEGIN PRIVATE KEY-----\n"),
        "auth.public_key",
        "private key",
    ),
    "ec-key-for-rs256": (_jwt(public_key=public_pem(ec_key()).decode()), "auth.public_key", "RSA"),
    "two-key-sources": (_jwt(key_file="/etc/k"), "auth", "exactly one of"),
    "relative-key-file": (
        _jwt(public_key=None, key_file="k.pem"),
        "auth.key_file",
        "absolute path",
    ),
    "no-audience": (_jwt(audience=[]), "auth.audience", "expected a list of 1 to 16"),
    "alg-none": (_jwt(algorithm="none"), "auth.algorithm", "one of ES256, HS256, RS256"),
    "skew-too-large": (_jwt(clock_skew="10m"), "auth.clock_skew", "at most 300"),
}


@pytest.mark.parametrize(("auth", "path", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_auth_names_the_field(auth: dict[str, Any], path: str, message: str) -> None:
    problem = _route(auth)
    assert isinstance(problem, Problem)
    assert problem.path == path
    assert message in problem.message


@pytest.mark.parametrize("field", ["sha256", "key"])
def test_a_refused_key_field_never_shows_its_value(field: str) -> None:
    problem = _route(_api_keys(keys=[{"consumer": "a", field: "k-alice-plain"}]))
    assert isinstance(problem, Problem)
    assert problem.value == HIDDEN
    assert "k-alice-plain" not in str(problem)


RATE_KEYS = {
    "consumer-with-api-keys": (_api_keys(), "consumer", None),
    "consumer-with-jwt": (_jwt(), "consumer", None),
    "api-key-with-api-keys": (_api_keys(), "api_key", None),
    "consumer-without-auth": ({"type": "none"}, "consumer", "key consumer needs auth"),
    "api-key-with-jwt": (_jwt(), "api_key", "key api_key needs auth of type api_key"),
}


@pytest.mark.parametrize(("auth", "key", "refusal"), RATE_KEYS.values(), ids=RATE_KEYS.keys())
def test_a_rate_limit_by_consumer_or_key_needs_the_auth_that_names_it(
    auth: dict[str, Any], key: str, refusal: str | None
) -> None:
    result = _route(auth, rate_limit={"requests_per_second": 5, "key": key})
    if refusal is None:
        assert isinstance(result, Route), str(result)
    else:
        assert isinstance(result, Problem)
        assert (result.path, refusal in result.message) == ("rate_limit", True)
