"""Hostile input an outside audit found getting through: slow clients, odd targets and headers."""

from __future__ import annotations

import asyncio

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import Client, Upstream, get, post

from mesh.engine import engine as engine_module
from mesh.forwarding.policy_routes import PolicyRouter
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route


@pytest.fixture
def fast_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's once-a-second sweep, which enforces client deadlines, every 50 ms."""
    monkeypatch.setattr(engine_module, "_SWEEP_EVERY", 0.05)


# --- deadlines: a slow client is the client's fault -----------------------------------


async def test_a_head_trickling_in_a_byte_at_a_time_is_408_at_the_head_deadline(
    fast_sweep: None, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, client_header_timeout=0.4)
    client = await proxy.client()
    client.send(b"GET / HTTP/1.1\r\nHost: svc\r\n")

    async def trickle() -> None:
        for byte in b"X-Slow: " + b"s" * 100:
            client.send(bytes([byte]))  # each byte keeps the connection active
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        answer = await client.response(timeout=3)
    finally:
        sender.cancel()
    assert (answer.status, answer.header("x-mesh-flags")) == (408, "DT")
    assert answer.json()["error"] == "ClientTimeout"
    assert await client.closed()
    assert upstream.received == b""


async def test_the_idle_timeout_applies_between_requests_not_within_a_head(
    fast_sweep: None, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies(
        {"svc": [upstream.port]}, client_idle_timeout=0.2, client_header_timeout=5
    )
    client = await proxy.client()
    client.send(b"GET /first HTTP/1.1\r\nHo")
    await asyncio.sleep(0.6)  # silent for three idle timeouts, well within the head deadline
    answer = await client.exchange(b"st: svc\r\n\r\n")
    assert answer.json()["target"] == "/first"
    assert await client.closed(timeout=2)  # idle after it: the idle timeout closes it


async def test_a_connection_that_never_sends_is_closed_at_the_head_deadline(
    fast_sweep: None, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies(
        {"svc": [upstream.port]}, client_idle_timeout=60, client_header_timeout=0.3
    )
    client = await proxy.client()
    assert await client.closed(timeout=2)
    assert client.peer.received == b""  # nothing was asked, so nothing is answered


@pytest.mark.parametrize(
    "timeouts",
    [{"request_timeout": 0.3}, {"request_timeout": 5, "per_try_timeout": 0.3}],
    ids=["request-deadline", "per-try-timeout"],
)
async def test_a_body_that_stalls_is_408_and_no_fault_of_the_instance(
    timeouts: dict[str, float], proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, **timeouts)
    evidence: list[object] = []
    proxy.engine.directory.on_evidence = evidence.append
    client = await proxy.client()
    client.send(post("Content-Length: 10\r\n", b"abc"))  # 7 bytes short, forever
    answer = await client.response()
    assert (answer.status, answer.header("x-mesh-flags")) == (408, "DT")
    assert answer.json()["error"] == "ClientTimeout"
    assert await client.closed()
    state = proxy.engine.directory.state("svc")
    assert state is not None
    assert not state.ejections.failing  # no outlier streak started
    assert evidence == []
    metrics = proxy.engine.metrics
    assert [key[2:] for key in metrics.requests] == [(408, "DT")]
    assert metrics.upstream_resends == {}  # not retried


# --- the target and the Host -------------------------------------------------------------


async def test_an_absolute_form_target_forwards_its_authority_as_the_host(
    client: Client, upstream: Upstream
) -> None:
    answer = await client.exchange(b"GET http://svc:80/c HTTP/1.1\r\nHost: other.example\r\n\r\n")
    seen = answer.json()
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert (seen["target"], headers["host"]) == ("/c", "svc:80")
    assert "other.example" not in str(seen["headers"])


@pytest.mark.parametrize(
    "host", ["we b", "a@svc", "svc/x", "[::1", "svc:8o", "svc\\x", "we%20b", "svc%"], ids=repr
)
async def test_an_invalid_host_is_400(host: str, proxies: ProxyFactory, upstream: Upstream) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    answer = await client.exchange(get("/svc/x", host=host))  # routable by its path today
    assert (answer.status, answer.header("x-mesh-flags")) == (400, "DPE")
    assert upstream.received == b""


@pytest.mark.parametrize("authority", ["we%20b", "svc%2fx", "svc%", "svc%4", "svc%zz", "we b"])
async def test_an_absolute_form_target_with_an_invalid_authority_is_400(
    authority: str, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    request = f"GET http://{authority}/x HTTP/1.1\r\nHost: svc\r\n\r\n".encode()
    answer = await (await proxy.client()).exchange(request)
    assert (answer.status, answer.header("x-mesh-flags")) == (400, "DPE")
    assert upstream.received == b""


@pytest.mark.parametrize(
    "host", ["svc:8080", "SVC.", "[::1]:80", "127.0.0.1", "a-b.c_d~", "xn--caf-dma", "caf%C3%A9"]
)
async def test_valid_hosts_pass(host: str, proxies: ProxyFactory, upstream: Upstream) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    answer = await (await proxy.client()).exchange(get("/svc/x", host=host))
    assert answer.status == 200


async def test_an_absolute_form_target_with_user_info_is_400(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    answer = await client.exchange(b"GET http://user@svc/ HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert answer.status == 400
    assert upstream.received == b""


async def test_a_content_length_with_leading_zeros_is_forwarded_canonical(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    answer = await (await proxy.client()).exchange(post("Content-Length: 010\r\n", b"0123456789"))
    assert (answer.status, answer.json()["body"]) == (200, "0123456789")
    assert upstream.requests()[0].all("content-length") == ["10"]


# --- paths: routes and the upstream see one normalised path ---------------------------


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/web/../svc/x", "/x"),  # routed by the path it names, not the one it starts with
        ("/svc/a/./b/../c?q=/../", "/a/c?q=/../"),  # the query is left alone
        ("/svc//a///b", "/a/b"),
        ("/svc/%7Euser/%61%2d%5F", "/~user/a-_"),  # unreserved characters decoded
        ("/svc/a%2e%2E/%2e%2e/b", "/b"),  # %2E is '.': decoded, then a dot segment
        ("/svc/caf%c3%a9", "/caf%C3%A9"),  # others kept, in upper case
    ],
)
async def test_paths_are_normalised_before_routing_and_forwarded_so(
    target: str, forwarded: str, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    answer = await (await proxy.client()).exchange(get(target, host="gw.example"))
    assert (answer.status, answer.json()["target"]) == (200, forwarded)


@pytest.mark.parametrize(
    "target",
    [
        "/svc/../../x",  # above the root
        "/svc/%2e%2e/%2E%2E/x",
        "/svc/a%2Fb",  # an encoded slash: routes and the upstream would see other segments
        "/svc/a%5cb",
        "/svc/a%zzb",  # not a percent-encoding
        "/svc/a%4",
        "/svc/..;/x",  # a dot segment with a parameter (Tomcat reads it as '..')
    ],
)
async def test_paths_that_cannot_be_normalised_safely_are_400(
    target: str, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    answer = await (await proxy.client()).exchange(get(target, host="gw.example"))
    assert (answer.status, answer.header("x-mesh-flags")) == (400, "DPE")
    assert upstream.received == b""


async def test_normalisation_off_forwards_the_path_as_sent(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, normalize_path=False)
    answer = await (await proxy.client()).exchange(get("/svc//a/%2e%2e/%7Eb", host="gw.example"))
    assert (answer.status, answer.json()["target"]) == (200, "//a/%2e%2e/%7Eb")


def route(name: str, prefix: str, service: str) -> Route:
    document = parse(
        {
            "kind": "Route",
            "name": name,
            "match": {"path_prefix": prefix},
            "to": [{"service": service}],
        },
        None,
    )
    assert isinstance(document, Route)
    return document


@pytest.mark.parametrize(
    "target", ["/public/../admin/users", "/public/%2e%2e/admin/users", "/public//..//admin/users"]
)
async def test_a_guarded_route_cannot_be_reached_through_another_routes_path(
    target: str, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    public, admin = await upstreams(), await upstreams()
    proxy = await proxies({"public": [public.port], "admin": [admin.port]})
    table = RouteTable([route("public", "/public", "public"), route("admin", "/admin", "admin")])
    proxy.engine.router = PolicyRouter(table, None, proxy.engine.rng)
    answer = await (await proxy.client()).exchange(get(target, host="gw.example"))
    assert (answer.status, answer.json()["target"]) == (200, "/admin/users")
    assert public.received == b""  # the route it was dressed up as never saw it


# --- upgrades ------------------------------------------------------------------------------


async def test_an_h2c_upgrade_is_stripped_and_the_connection_stays_http_1(
    client: Client, upstream: Upstream
) -> None:
    h2c = get(
        "/first",
        extra="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    )
    http2_settings_alone = get("/second", extra="HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
    client.send(h2c + http2_settings_alone + get("/third"))
    answers = [await client.response() for _ in range(3)]
    assert [(a.status, a.json()["target"]) for a in answers] == [
        (200, "/first"),
        (200, "/second"),
        (200, "/third"),
    ]
    for answer in answers:
        names = {name.lower() for name, _ in answer.json()["headers"]}
        assert not names & {"upgrade", "http2-settings", "connection"}, names


async def test_an_h2c_upgrade_offered_beside_another_keeps_only_the_other(
    client: Client, upstream: Upstream
) -> None:
    answer = await client.exchange(get(extra="Connection: Upgrade\r\nUpgrade: h2c, websocket\r\n"))
    # The echo upstream declines (200), and a declined upgrade ends the connection.
    headers = {name.lower(): value for name, value in answer.json()["headers"]}
    assert headers["upgrade"] == "websocket"
