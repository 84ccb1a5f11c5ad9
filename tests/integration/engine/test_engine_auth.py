"""Edge authentication over loopback: 401/403 as the client sees them, what the upstream sees."""

from __future__ import annotations

import random
from typing import Any

from factories import AUDIENCE, ISSUER, public_pem, rsa_key, token
from proxying import ProxyFactory
from wire import Client, Upstream, get

from mesh import clock
from mesh.forwarding.policy_routes import PolicyRouter, guarded
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route
from mesh.security.api_keys import hash_key

HOST = "api.example.com"
KEYS = [
    {"consumer": "alice", "sha256": hash_key(b"k-alice")},
    {"consumer": "bob", "sha256": hash_key(b"k-bob")},
    {"consumer": "carol", "sha256": hash_key(b"k-carol")},
]
ROUTES: list[dict[str, Any]] = [
    {
        "name": "keys",
        "match": {"hosts": [HOST], "path_prefix": "/v1"},
        "auth": {"type": "api_key", "query": "api_key", "keys": KEYS, "allow": ["alice", "bob"]},
        "rate_limit": {"requests_per_second": 0.01, "burst": 2, "key": "consumer"},
    },
    {
        "name": "tokens",
        "match": {"hosts": [HOST], "path_prefix": "/v2"},
        "auth": {
            "type": "jwt",
            "algorithm": "RS256",
            "issuer": ISSUER,
            "audience": [AUDIENCE],
            "public_key": public_pem(rsa_key()).decode(),
        },
    },
    {"name": "open", "match": {"hosts": [HOST], "path_prefix": "/open"}},
]


async def _client(
    proxies: ProxyFactory, upstream: Upstream, *, strip: bool = True, defaults: bool = False
) -> Client:
    """A gateway with ROUTES to service hello; `defaults`: with the default routes behind
    them, as mesh.node.forwarding wires them at the edge."""
    routes = []
    for raw in ROUTES:
        route = parse({"kind": "Route", "to": [{"service": "hello"}], **raw}, None)
        assert isinstance(route, Route), route
        routes.append(route)
    table = RouteTable(routes)
    proxy = await proxies(
        {"hello": [upstream.port], "other": [upstream.port]}, strip_mesh_headers=strip
    )
    fallback = proxy.engine.default_routes.hiding(guarded(table)) if defaults else None
    proxy.engine.router = PolicyRouter(table, fallback, random.Random(1))
    return await proxy.client()


def _seen(upstream: Upstream) -> dict[str, str]:
    """The last request's headers as the upstream received them (lower-case names)."""
    request = upstream.requests()[-1]
    return {name.decode().lower(): value.decode() for name, value in request.headers}


async def test_no_key_is_401_with_a_challenge_flags_and_a_json_reason(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream)
    answer = await client.exchange(get("/v1/x", HOST))
    assert (answer.status, answer.header("x-mesh-flags")) == (401, "UAEX")
    assert answer.header("www-authenticate") == (
        'ApiKey realm="keys", header="x-api-key", query="api_key"'
    )
    assert answer.json()["error"] == "Unauthenticated"
    assert answer.json()["detail"] == "no API key"
    assert upstream.requests() == []


async def test_the_default_routes_do_not_reach_a_service_an_auth_route_guards(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream, defaults=True)
    assert (await client.exchange(get("/v1/hi", HOST))).status == 401
    for request in (get("/hello/hi", "gw"), get("/hi", "hello"), get("http://hello/hi", "gw")):
        answer = await client.exchange(request)
        assert (answer.status, answer.header("x-mesh-flags")) == (404, "NR")
    assert upstream.requests() == []
    assert (await client.exchange(get("/other/hi", "gw"))).status == 200  # not guarded


async def test_an_invalid_token_is_401_invalid_token(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream)
    expired = token(now=clock.wall() - 7200).decode()
    answer = await client.exchange(get("/v2/x", HOST, f"Authorization: Bearer {expired}\r\n"))
    assert (answer.status, answer.header("x-mesh-flags")) == (401, "UAEX")
    assert answer.header("www-authenticate") == 'Bearer realm="tokens", error="invalid_token"'
    assert answer.json()["detail"] == "token expired"


async def test_a_consumer_the_route_does_not_allow_is_403(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream)
    answer = await client.exchange(get("/v1/x", HOST, "x-api-key: k-carol\r\n"))
    assert (answer.status, answer.header("x-mesh-flags")) == (403, "RBAC")
    assert answer.header("www-authenticate") is None
    assert answer.json()["error"] == "ConsumerNotAllowed"
    assert upstream.requests() == []


async def test_the_consumer_reaches_the_upstream_and_the_key_does_not(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream)
    forged = "X-Mesh-Consumer: root\r\n"
    answer = await client.exchange(get("/v1/x?a=1&api_key=k-bob", HOST, forged))
    assert answer.status == 200
    assert upstream.requests()[-1].target == b"/v1/x?a=1"
    seen = _seen(upstream)
    assert seen["x-mesh-consumer"] == "bob"
    assert len(upstream.requests()[-1].all("x-mesh-consumer")) == 1

    answer = await client.exchange(get("/v1/y", HOST, f"x-api-key: k-alice\r\n{forged}"))
    assert answer.status == 200
    seen = _seen(upstream)
    assert (seen["x-mesh-consumer"], "x-api-key" in seen) == ("alice", False)

    bearer = token(now=clock.wall()).decode()
    answer = await client.exchange(get("/v2/z", HOST, f"Authorization: Bearer {bearer}\r\n"))
    assert answer.status == 200
    assert _seen(upstream)["x-mesh-consumer"] == "alice"


async def test_a_client_copy_of_the_consumer_header_never_passes_even_on_an_agent(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream, strip=False)  # an agent keeps other x-mesh-*
    answer = await client.exchange(
        get("/open/x", HOST, "X-Mesh-Consumer: root\r\nx-mesh-hop: 1\r\n")
    )
    assert answer.status == 200
    seen = _seen(upstream)
    assert "x-mesh-consumer" not in seen
    assert seen["x-mesh-hop"] == "1"


async def test_a_rate_limit_per_consumer_keeps_consumers_apart(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    client = await _client(proxies, upstream)
    statuses = []
    for key in ["k-alice"] * 3 + ["k-bob"] * 2:  # one client address for both
        answer = await client.exchange(get("/v1/x", HOST, f"x-api-key: {key}\r\n"))
        statuses.append((answer.status, answer.header("x-mesh-flags")))
    assert statuses == [(200, None), (200, None), (429, "RL"), (200, None), (200, None)]
