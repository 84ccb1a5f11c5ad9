"""One request relayed: request and response framing both ways, interim answers, tunnels."""

from __future__ import annotations

import asyncio

import pytest
from proxying import ProxyFactory, UpstreamFactory, through
from wire import Client, Peer, Upstream, get, response

# --- response framing -------------------------------------------------------------------

CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
)

# (upstream response, does the upstream close after it, HTTP version of the client) ->
# (client gets: body, chunked?, trailers, keeps its connection?)
FRAMING = {
    "content-length": (response(200, b"hello world"), False, "1.1", (False, [], True)),
    "chunked-extensions-trailers": (CHUNKED_WITH_TRAILERS, False, "1.1", (True, ["42"], True)),
    "http10-upstream-read-to-close": (
        b"HTTP/1.0 200 OK\r\n\r\nhello world",
        True,
        "1.1",
        (True, [], True),
    ),
    "http11-upstream-read-to-close": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
        True,
        "1.1",
        (True, [], True),
    ),
    "chunked-to-http10-client": (CHUNKED_WITH_TRAILERS, False, "1.0", (False, [], False)),
    "content-length-to-http10-client": (
        response(200, b"hello world"),
        False,
        "1.0",
        (False, [], False),
    ),
}


@pytest.mark.parametrize(
    ("raw", "close", "version", "expected"), FRAMING.values(), ids=FRAMING.keys()
)
async def test_response_bodies_are_relayed_with_framing_the_client_understands(
    raw: bytes,
    close: bool,
    version: str,
    expected: tuple[bool, list[str], bool],
    proxies: ProxyFactory,
    upstreams: UpstreamFactory,
) -> None:
    chunked, trailers, keeps = expected
    client, _ = await through(proxies, upstreams, raw, close=close)
    answer = await client.exchange(f"GET /svc/x HTTP/{version}\r\nHost: svc\r\n\r\n".encode())
    assert bytes(answer.body) == b"hello world"
    assert (answer.header("transfer-encoding") == "chunked") is chunked
    assert [v.decode() for _, v in answer.trailers] == trailers
    assert "trailer" not in answer.names()
    if keeps:
        assert answer.header("connection") is None
        assert not await client.closed(0.2)
    else:  # a 1.0 client without keep-alive: the body ends with the connection
        assert answer.header("connection") == "close"
        assert await client.closed()


@pytest.mark.parametrize(
    ("request_line", "raw"),
    [
        ("HEAD / HTTP/1.1", response(200, b"", {"Content-Length": "1234"})),
        ("HEAD / HTTP/1.1", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("GET / HTTP/1.1", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET / HTTP/1.1", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: x\r\n\r\n"),
    ],
    ids=["head-content-length", "head-chunked", "204", "304"],
)
async def test_bodiless_responses_carry_no_body_and_keep_the_connection(
    request_line: str, raw: bytes, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    client, _ = await through(proxies, upstreams, raw, response(200, b"next"))
    client.send(f"{request_line}\r\nHost: svc\r\n\r\n".encode())
    head = await client.head_response()
    assert head.status in (200, 204, 304)
    assert head.header("transfer-encoding") is None
    if b"1234" in raw:
        assert head.header("content-length") == "1234"  # the length of what GET would get
    answer = await client.exchange(get())  # no stray body bytes in between
    assert bytes(answer.body) == b"next"


async def test_interim_responses_are_relayed_before_the_final_one(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + response(
        200, b"done"
    )
    client, _ = await through(proxies, upstreams, raw)
    client.send(get())
    hints, final = await client.response(), await client.response()
    assert (hints.status, hints.header("link")) == (103, "</a.css>; rel=preload")
    assert (final.status, bytes(final.body)) == (200, b"done")


# --- request framing --------------------------------------------------------------------

REQUESTS = {
    "no-body": (get("/r"), b"", None),
    "content-length": (
        b"PUT /r HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        None,
    ),
    "chunked-extensions-trailers": (
        b"PUT /r HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"2;a=b\r\nhe\r\n3\r\nllo\r\n0\r\nX-Sum: 5\r\n\r\n",
        b"hello",
        [(b"X-Sum", b"5")],
    ),
}


@pytest.mark.parametrize(("raw", "body", "trailers"), REQUESTS.values(), ids=REQUESTS.keys())
async def test_request_bodies_reach_the_upstream_with_the_proxys_framing(
    raw: bytes,
    body: bytes,
    trailers: list[tuple[bytes, bytes]] | None,
    client: Client,
    upstream: Upstream,
) -> None:
    assert (await client.exchange(raw)).status == 200
    (seen,) = upstream.requests()
    assert bytes(seen.body) == body
    if trailers is None:
        assert seen.header("transfer-encoding") is None
    else:
        assert seen.all("transfer-encoding") == ["chunked"]
        assert seen.trailers == trailers


async def test_a_body_sent_while_the_upstream_connection_opens_is_not_stuck(
    client: Client,
) -> None:
    body = b"x" * (1 << 20)  # more than is buffered while connecting; the rest must flow
    head = b"PUT /big HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % len(body)
    answer = await client.exchange(head + body)
    assert (answer.status, len(answer.json()["body"])) == (200, len(body))


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100"])
async def test_an_answer_before_the_body_ends_closes_both_connections_after_it(
    expect: bool, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def early(peer: Peer) -> None:
        while b"\r\n\r\n" not in peer.received:
            await peer.silent(0.01)
        peer.send(response(413, b"too big for me"))  # keep-alive, as far as it says
        await peer.closed(30)

    upstream = await upstreams(early)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    extra = b"Expect: 100-continue\r\n" if expect else b""
    client.send(b"PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 100000\r\n%s\r\n" % extra)
    if not expect:
        client.send(b"x" * 1000)
    answer = await client.response()
    assert (answer.status, answer.header("connection")) == (413, "close")
    assert await client.closed()
    assert proxy.engine.pools.idle_count() == 0  # its request was cut short: not reusable


# --- upgrade (WebSocket) pass-through ----------------------------------------------------

UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def tunnel_echo(closed: asyncio.Event) -> object:
    """Answers 101, then echoes bytes upper-cased until told `bye` or the client closes."""

    async def handler(peer: Peer) -> None:
        await peer.message()
        peer.send(SWITCHING + b"HELLO")  # the first tunnel bytes ride with the 101
        while data := await peer.tunnel_bytes(1, timeout=30):
            if data == b"bye":
                peer.close()
                return
            peer.send(data.upper())
        closed.set()

    return handler


@pytest.mark.parametrize("closer", ["client", "upstream"])
async def test_an_upgrade_relays_bytes_both_ways_until_a_side_closes(
    closer: str, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream_saw_close = asyncio.Event()
    upstream = await upstreams(tunnel_echo(upstream_saw_close))
    proxy = await proxies({"svc": [upstream.port]}, request_timeout=0.2)
    client = await proxy.client()
    client.send(UPGRADE + b"early")  # sent before the 101: held until the upstream agrees
    switched = await client.response()
    assert (switched.status, switched.header("upgrade")) == (101, "websocket")
    assert switched.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert await client.peer.tunnel_bytes(10) == b"HELLOEARLY"
    await asyncio.sleep(0.3)  # past the request timeout: a tunnel is not a request
    for _ in range(3):
        client.send(b"ping")
        assert await client.peer.tunnel_bytes(4) == b"PING"
    (seen,) = upstream.requests()
    assert (seen.header("connection"), seen.header("upgrade")) == ("upgrade", "websocket")
    if closer == "client":
        client.close()
        await asyncio.wait_for(upstream_saw_close.wait(), 5)
    else:
        client.send(b"bye")
        assert await client.closed()


async def test_a_declined_upgrade_never_forwards_the_early_bytes(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    client, upstream = await through(
        proxies, upstreams, response(400, b"no websocket here"), response(200, b"second")
    )
    client.send(UPGRADE + b"GET /sneaky HTTP/1.1\r\nHost: svc\r\n\r\n")
    answer = await client.response()
    assert (answer.status, answer.header("connection")) == (400, "close")
    assert await client.closed()
    assert [r.target for r in upstream.requests()] == [b"/chat"]
    assert b"sneaky" not in upstream.received
