"""mesh.forwarding.auth through the policy router: who a request is, and what it may reach."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from factories import AUDIENCE, HS_SECRET, ISSUER, RequestHead, public_pem, rsa_key, token
from manual_clock import EPOCH

from mesh.errors import ConsumerNotAllowed, RateLimited, Unauthenticated
from mesh.forwarding.key_files import RECHECK
from mesh.forwarding.policy_routes import PolicyRouter
from mesh.forwarding.routing import Routed
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route
from mesh.security.api_keys import hash_key

HOST = b"api.example.com"
KEYS = [
    {"consumer": "alice", "sha256": hash_key(b"k-alice")},
    {"consumer": "bob", "sha256": hash_key(b"k-bob")},
    {"consumer": "carol", "sha256": hash_key(b"k-carol")},
]
API_KEY_AUTH = {"type": "api_key", "query": "api_key", "keys": KEYS, "allow": ["alice", "bob"]}


def _router(auth: dict[str, Any], **more: Any) -> PolicyRouter:
    document = {
        "kind": "Route",
        "name": "api",
        "match": {"hosts": [HOST.decode()], "path_prefix": "/v1"},
        "rewrite": {"strip_prefix": True},
        "to": [{"service": "hello"}],
        "auth": auth,
        **more,
    }
    route = parse(document, None)
    assert isinstance(route, Route), route
    return PolicyRouter(RouteTable([route]), None, random.Random(1), wall=lambda: EPOCH)


def _call(
    router: PolicyRouter, target: bytes, *headers: tuple[bytes, bytes], now: float = 0.0
) -> Routed:
    return router(RequestHead(target, HOST, headers=list(headers)), now)


API_KEY_CASES = {
    "header": (b"/v1/x?a=1", [(b"X-Api-Key", b"k-alice")], "alice", b"/x?a=1"),
    "query-stripped": (b"/v1/x?a=1&api_key=k-bob&b=2", [], "bob", b"/x?a=1&b=2"),
    "query-alone": (b"/v1/x?api_key=k-bob", [], "bob", b"/x"),
    "query-percent-encoded": (b"/v1/x?api%5Fkey=k%2Dbob", [], "bob", b"/x"),
    "header-wins-over-query": (
        b"/v1/x?api_key=k-bob",
        [(b"x-api-key", b"k-alice")],
        "alice",
        b"/x",
    ),
}


@pytest.mark.parametrize(
    ("target", "headers", "consumer", "forwarded"), API_KEY_CASES.values(), ids=API_KEY_CASES.keys()
)
def test_a_known_api_key_names_its_consumer_and_never_goes_upstream(
    target: bytes, headers: list[tuple[bytes, bytes]], consumer: str, forwarded: bytes
) -> None:
    routed = _call(_router(API_KEY_AUTH), target, *headers)
    assert (routed.consumer, routed.target, routed.credential) == (
        consumer.encode(),
        forwarded,
        b"x-api-key",
    )


API_KEY_REFUSALS = {
    "missing": (b"/v1/x", [], Unauthenticated, "no API key"),
    "empty": (b"/v1/x?api_key=", [], Unauthenticated, "no API key"),
    "unknown": (b"/v1/x", [(b"x-api-key", b"k-mallory")], Unauthenticated, "unknown API key"),
    "the-digest-itself": (
        b"/v1/x",
        [(b"x-api-key", hash_key(b"k-alice").encode())],
        Unauthenticated,
        "unknown API key",
    ),
    "two-headers": (
        b"/v1/x",
        [(b"x-api-key", b"k-alice"), (b"X-API-KEY", b"k-bob")],
        Unauthenticated,
        "more than one",
    ),
    "two-query-keys": (
        b"/v1/x?api_key=k-alice&api_key=k-mallory",
        [],
        Unauthenticated,
        "more than one api_key query parameter",
    ),
    "header-and-two-query-keys": (
        b"/v1/x?api_key=k-alice&api_key=k-mallory",
        [(b"x-api-key", b"k-alice")],
        Unauthenticated,
        "more than one api_key query parameter",
    ),
    "not-allowed": (b"/v1/x", [(b"x-api-key", b"k-carol")], ConsumerNotAllowed, "'carol'"),
}


@pytest.mark.parametrize(
    ("target", "headers", "error", "detail"), API_KEY_REFUSALS.values(), ids=API_KEY_REFUSALS.keys()
)
def test_api_key_refusals(
    target: bytes, headers: list[tuple[bytes, bytes]], error: type[Exception], detail: str
) -> None:
    with pytest.raises(error, match=detail) as refused:
        _call(_router(API_KEY_AUTH), target, *headers)
    if isinstance(refused.value, Unauthenticated):
        expected = 'ApiKey realm="api", header="x-api-key", query="api_key"'
        assert refused.value.challenge == expected


def _jwt_auth(**more: Any) -> dict[str, Any]:
    return {
        "type": "jwt",
        "algorithm": "RS256",
        "issuer": ISSUER,
        "audience": [AUDIENCE],
        "public_key": public_pem(rsa_key()).decode(),
        **more,
    }


def _bearer(raw: bytes) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Bearer " + raw)


JWT_REFUSALS = {
    "missing": ([], 'Bearer realm="api"', "no bearer token"),
    "basic": ([(b"authorization", b"Basic YTpi")], 'Bearer realm="api"', "no bearer token"),
    "expired": (
        [_bearer(token(now=EPOCH - 7200))],
        'Bearer realm="api", error="invalid_token"',
        "token expired",
    ),
}


@pytest.mark.parametrize(
    ("headers", "challenge", "detail"), JWT_REFUSALS.values(), ids=JWT_REFUSALS.keys()
)
def test_jwt_refusals_say_bearer_and_invalid_token_once_a_token_was_given(
    headers: list[tuple[bytes, bytes]], challenge: str, detail: str
) -> None:
    with pytest.raises(Unauthenticated, match=detail) as refused:
        _call(_router(_jwt_auth()), b"/v1/x", *headers)
    assert refused.value.challenge == challenge


def test_a_valid_jwt_names_its_consumer_and_is_forwarded_as_sent() -> None:
    routed = _call(_router(_jwt_auth()), b"/v1/x", _bearer(token(now=EPOCH)))
    assert (routed.consumer, routed.credential) == (b"alice", None)
    with pytest.raises(ConsumerNotAllowed):
        _call(_router(_jwt_auth(allow=["bob"])), b"/v1/x", _bearer(token(now=EPOCH)))


def test_a_route_without_auth_names_no_consumer() -> None:
    routed = _call(_router({"type": "none"}), b"/v1/x", (b"x-mesh-consumer", b"root"))
    assert routed.consumer is None


@pytest.mark.parametrize("key", ["consumer", "api_key"])
def test_rate_limits_per_consumer_or_key_do_not_mix_consumers(key: str) -> None:
    router = _router(API_KEY_AUTH, rate_limit={"requests_per_second": 1, "burst": 1, "key": key})
    _call(router, b"/v1/x", (b"x-api-key", b"k-alice"))
    with pytest.raises(RateLimited):
        _call(router, b"/v1/x", (b"x-api-key", b"k-alice"))
    _call(router, b"/v1/x", (b"x-api-key", b"k-bob"))  # same address, another consumer


def test_a_key_file_change_is_used_within_a_recheck_and_a_broken_one_is_not(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(HS_SECRET)
    router = _router(_jwt_auth(algorithm="HS256", public_key=None, key_file=str(secret)))
    old = _bearer(token(HS_SECRET, "HS256", now=EPOCH))
    new_secret = b"n" * 40
    new = _bearer(token(new_secret, "HS256", now=EPOCH))
    assert _call(router, b"/v1/x", old, now=1.0).consumer == b"alice"

    secret.write_bytes(b"too short")  # a bad write: the last good secret stays
    assert _call(router, b"/v1/x", old, now=1.0 + RECHECK).consumer == b"alice"

    secret.write_bytes(new_secret)
    with pytest.raises(Unauthenticated):  # not looked at again within RECHECK
        _call(router, b"/v1/x", new, now=1.0 + RECHECK * 1.5)
    assert _call(router, b"/v1/x", new, now=1.0 + RECHECK * 2).consumer == b"alice"
    with pytest.raises(Unauthenticated, match="bad signature"):
        _call(router, b"/v1/x", old, now=1.0 + RECHECK * 2)


def test_a_deleted_key_file_accepts_no_token_until_it_is_back(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(HS_SECRET)
    router = _router(_jwt_auth(algorithm="HS256", public_key=None, key_file=str(secret)))
    valid = _bearer(token(HS_SECRET, "HS256", now=EPOCH))
    assert _call(router, b"/v1/x", valid, now=1.0).consumer == b"alice"

    secret.unlink()  # revoked: the last keys must not go on working
    for later in (2.0, 3.0):
        with pytest.raises(Unauthenticated, match="no key verifies") as refused:
            _call(router, b"/v1/x", valid, now=later + RECHECK)
        assert isinstance(refused.value, Unauthenticated)
        assert refused.value.challenge == 'Bearer realm="api", error="invalid_token"'

    secret.write_bytes(HS_SECRET)
    assert _call(router, b"/v1/x", valid, now=4.0 + RECHECK).consumer == b"alice"


def test_a_missing_key_file_makes_the_router_unbuildable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"jwks\.json"):
        _router(_jwt_auth(public_key=None, jwks_file=str(tmp_path / "jwks.json")))
