"""Header rules: hop-by-hop removal both ways, forwarding headers, request ids, trace context."""

from __future__ import annotations

import re

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import FORWARDING, Client, Message, Peer, Upstream, get, response

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
VALID_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def forwarded(client: Client, upstream: Upstream, extra: str, **kw: str) -> Message:
    """The request as the upstream saw it."""
    answer = await client.exchange(get(extra=extra, **kw))
    assert answer.status == 200, answer
    return upstream.requests()[-1]


async def test_hop_by_hop_request_headers_are_removed(client: Client, upstream: Upstream) -> None:
    seen = await forwarded(
        client,
        upstream,
        "Connection: keep-alive, X-Secret, Host\r\nKeep-Alive: timeout=5\r\nX-Secret: s\r\n"
        "TE: trailers\r\nTrailer: X-Sum\r\nProxy-Connection: keep-alive\r\n"
        "Proxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nX-Kept: k\r\n",
    )
    for name in (
        "connection",
        "keep-alive",
        "x-secret",
        "te",
        "trailer",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ):
        assert name not in seen.names(), name
    assert (seen.header("x-kept"), seen.header("host")) == ("k", "svc")


async def test_hop_by_hop_response_headers_are_removed(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def handler(peer: Peer) -> None:
        while (await peer.message()).complete:
            peer.send(
                response(
                    200,
                    b"ok",
                    {
                        "Connection": "keep-alive, X-Internal",
                        "Keep-Alive": "timeout=5",
                        "X-Internal": "secret",
                        "Proxy-Authenticate": "Basic",
                        "X-Public": "yes",
                    },
                )
            )

    upstream = await upstreams(handler)
    proxy = await proxies({"svc": [upstream.port]})
    answer = await (await proxy.client()).exchange(get())
    assert answer.names() == {"content-length", "x-public", "date", "via"}  # date, via: ours


@pytest.mark.parametrize(("extra", "expected"), FORWARDING.values(), ids=FORWARDING.keys())
async def test_forwarding_headers(
    extra: str, expected: tuple[str, str, str], client: Client, upstream: Upstream
) -> None:
    seen = await forwarded(client, upstream, extra)
    got = tuple(seen.all(f"x-forwarded-{n}") for n in ("for", "proto", "host"))
    assert got == tuple([value] for value in expected)


async def test_a_request_id_is_propagated_or_created(client: Client, upstream: Upstream) -> None:
    given = await forwarded(client, upstream, "X-Request-Id: abc-123\r\nX-Request-Id: dup\r\n")
    assert given.all("x-request-id") == ["abc-123"]
    first = await forwarded(client, upstream, "")
    second = await forwarded(client, upstream, "")
    (one,), (two,) = first.all("x-request-id"), second.all("x-request-id")
    assert "" != one != two != ""


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (VALID_TRACE, True),
        ("", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),  # upper case
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),  # zero trace id
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),  # version ff
        ("garbage", False),
    ],
    ids=["valid", "absent", "upper-case", "zero-trace", "version-ff", "garbage"],
)
async def test_traceparent_is_propagated_when_valid_else_created(
    given: str, kept: bool, client: Client, upstream: Upstream
) -> None:
    seen = await forwarded(client, upstream, f"traceparent: {given}\r\n" if given else "")
    (value,) = seen.all("traceparent")
    if kept:
        assert value == given
    else:
        assert TRACEPARENT.fullmatch(value)
        assert value != given


@pytest.mark.parametrize("strip", [True, False], ids=["gateway", "agent"])
async def test_client_mesh_headers_are_dropped_at_the_gateway_only(
    strip: bool, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, strip_mesh_headers=strip)
    client = await proxy.client()
    seen = await forwarded(
        client, upstream, "X-Mesh-Identity: admin\r\nX-Mesh-Flags: x\r\nX-Other: o\r\n"
    )
    assert ("x-mesh-identity" in seen.names()) is not strip
    assert ("x-mesh-flags" in seen.names()) is not strip
    assert seen.header("x-other") == "o"


async def test_header_names_and_order_are_kept(client: Client, upstream: Upstream) -> None:
    seen = await forwarded(client, upstream, "X-B: 2\r\nx-a: 1\r\nX-B: 3\r\n")
    assert [(n, v) for n, v in seen.headers if n.lower() in (b"x-a", b"x-b")] == [
        (b"X-B", b"2"),
        (b"x-a", b"1"),
        (b"X-B", b"3"),
    ]
