"""The client side: framing checks, smuggling defences, pipelining, HTTP/1.0, closes."""

from __future__ import annotations

import asyncio

import pytest
from proxying import Proxy, ProxyFactory, UpstreamFactory
from wire import SMUGGLED, Client, Peer, Upstream, echo_body, get, post, response

# Each is refused with 400 and the connection closed; none reaches the upstream at all.
REFUSED = {
    "cl-and-te": post(
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED
    ),
    "te-and-cl": post(
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"0\r\n\r\n" + SMUGGLED
    ),
    "cl-repeated-same": post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED),
    "cl-conflicting": post("Content-Length: 5\r\nContent-Length: 41\r\n", b"hello" + SMUGGLED),
    "cl-list": post("Content-Length: 5, 5\r\n", b"hello" + SMUGGLED),
    "cl-plus": post("Content-Length: +5\r\n", b"hello" + SMUGGLED),
    "cl-negative": post("Content-Length: -1\r\n", SMUGGLED),
    "cl-hex": post("Content-Length: 0x5\r\n", b"hello" + SMUGGLED),
    "cl-space-inside": post("Content-Length: 1 5\r\n", b"hello" + SMUGGLED),
    "cl-empty": post("Content-Length: \r\n", SMUGGLED),
    "cl-overflow": post("Content-Length: 99999999999999999999999\r\n", SMUGGLED),
    "te-xchunked": post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-chunked-identity": post(
        "Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n" + SMUGGLED
    ),
    "te-identity-chunked": post(
        "Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n" + SMUGGLED
    ),
    "te-gzip-chunked": post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-identity": post("Transfer-Encoding: identity\r\n", SMUGGLED),
    "te-repeated": post(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"
    ),
    "te-in-http10": post("Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED, "1.0"),
    "te-obs-fold": post("Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-space-before-colon": post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-tab-before-colon": post("Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-vertical-tab": post("Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-form-feed": post("Transfer-Encoding: chunked\x0c\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-trailing-whitespace": post("Transfer-Encoding: chunked \t\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-nul": post("Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-leading-space-line": b"POST /p HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: svc\r\n\r\n"
    + b"0\r\n\r\n"
    + SMUGGLED,
    "obs-fold-other-header": post("X-A: 1\r\n folded\r\nContent-Length: 0\r\n") + SMUGGLED,
    "bare-lf-headers": b"POST /p HTTP/1.1\nHost: svc\nContent-Length: 0\n\n" + SMUGGLED,
    "bare-lf-in-header": b"POST /p HTTP/1.1\r\nHost: svc\nX: y\r\nContent-Length: 0\r\n\r\n",
    "bare-cr": b"GET / HTTP/1.1\rHost: svc\r\r\n" + SMUGGLED,
    "nul-in-value": post("X-A: a\x00b\r\nContent-Length: 0\r\n") + SMUGGLED,
    "nul-in-name": post("X-\x00A: b\r\nContent-Length: 0\r\n") + SMUGGLED,
    "del-in-value": post("X-A: a\x7fb\r\nContent-Length: 0\r\n") + SMUGGLED,
    "empty-header-name": post(": b\r\nContent-Length: 0\r\n") + SMUGGLED,
    "chunk-size-not-hex": post(
        "Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n" + SMUGGLED
    ),
    "chunk-size-negative": post("Transfer-Encoding: chunked\r\n", b"-3\r\nabc\r\n0\r\n\r\n"),
    "chunk-size-overflow": post("Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"\r\nab\r\n"),
    "chunk-size-space": post(
        "Transfer-Encoding: chunked\r\n", b"3 \r\nabc\r\n0\r\n\r\n" + SMUGGLED
    ),
    "chunk-size-0x": post("Transfer-Encoding: chunked\r\n", b"0x3\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
    "chunk-data-too-long": post("Transfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"),
    "chunk-bare-lf": post("Transfer-Encoding: chunked\r\n", b"3\nabc\n0\n\n" + SMUGGLED),
    "http-0.9": b"GET /\r\n\r\n",
    "http-2.0": b"GET / HTTP/2.0\r\nHost: svc\r\n\r\n",
    "http-1.2": b"GET / HTTP/1.2\r\nHost: svc\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "host-repeated": b"GET / HTTP/1.1\r\nHost: svc\r\nHost: other\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: svc\r\n\r\n",
    "connect": b"CONNECT svc:80 HTTP/1.1\r\nHost: svc:80\r\n\r\n",
    "upgrade-with-body": post(
        f"Connection: upgrade\r\nUpgrade: websocket\r\nContent-Length: {len(SMUGGLED)}\r\n",
        SMUGGLED,
    ),
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
async def test_refused_with_400_before_reaching_the_upstream(
    raw: bytes, client: Client, upstream: Upstream
) -> None:
    answer = await client.exchange(raw)
    assert answer.status == 400, answer
    assert answer.header("x-mesh-flags") == "DPE"
    assert answer.header("connection") == "close"
    assert answer.json()["error"] == "BadRequest"
    assert await client.closed()
    assert upstream.received == b""


@pytest.mark.parametrize(
    "raw",
    [REFUSED["cl-and-te"], REFUSED["te-space-before-colon"]],
    ids=["cl-and-te", "te-space-before-colon"],
)
async def test_a_bad_request_after_a_good_one_ends_the_connection_after_its_answer(
    raw: bytes, client: Client, upstream: Upstream
) -> None:
    client.send(get("/first") + raw + get("/after"))
    first, refused = await client.response(), await client.response()
    assert (first.status, first.json()["target"]) == (200, "/first")
    assert refused.status == 400
    assert await client.closed()
    assert [r.target for r in upstream.requests()] == [b"/first"]


# Legal but unusual framing: accepted, and the upstream gets the proxy's own framing, so it
# finds exactly the requests the proxy found (what follows a body is a request of its own).
ACCEPTED = {
    "te-tab": "Transfer-Encoding:\tchunked\r\n",
    "te-two-spaces": "Transfer-Encoding:  chunked\r\n",
    "te-upper-case": "TRANSFER-ENCODING: CHUNKED\r\n",
}


@pytest.mark.parametrize("headers", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_legal_framing_variants_are_reframed_not_smuggled(
    headers: str, client: Client, upstream: Upstream
) -> None:
    client.send(post(headers, b"3;ext=1\r\nabc\r\n0\r\n\r\n" + SMUGGLED))
    first, second = await client.response(), await client.response()
    assert (first.status, first.json()["body"]) == (200, "abc")
    assert second.json()["target"] == "/smuggled"  # routed and answered by the proxy
    seen = upstream.requests()
    assert [(r.target, bytes(r.body)) for r in seen] == [(b"/p", b"abc"), (b"/smuggled", b"")]
    assert seen[0].all("transfer-encoding") == ["chunked"]


async def test_connection_listing_content_length_does_not_strip_the_framing(
    client: Client, upstream: Upstream
) -> None:
    answer = await client.exchange(
        post(f"Connection: content-length, host\r\nContent-Length: {len(SMUGGLED)}\r\n", SMUGGLED)
    )
    assert answer.json()["body"] == SMUGGLED.decode()
    (seen,) = upstream.requests()
    assert (seen.header("content-length"), seen.header("host")) == (str(len(SMUGGLED)), "svc")


# --- pipelining, HTTP/1.0, Connection: close, Expect ----------------------------------


async def test_pipelined_requests_are_answered_in_order(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def slow_first(peer: Peer) -> None:
        while (request := await peer.message()).complete:
            if request.target == b"/1":
                await asyncio.sleep(0.2)
            peer.send(response(200, echo_body(request)))

    upstream = await upstreams(slow_first)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    client.send(
        get("/1")
        + b"POST /2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc"
        + b"POST /3 HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nd\r\n0\r\n\r\n"
        + get("/4")
    )
    answers = [await client.response() for _ in range(4)]
    assert [(a.json()["target"], a.json()["body"]) for a in answers] == [
        ("/1", ""),
        ("/2", "abc"),
        ("/3", "d"),
        ("/4", ""),
    ]


async def test_http10_client_without_keep_alive_is_closed_after_its_answer(
    client: Client,
) -> None:
    answer = await client.exchange(b"GET /svc/old HTTP/1.0\r\n\r\n")  # routed by path
    assert answer.status == 200
    assert answer.version == "1.1"  # our highest version, framed for 1.0 (RFC 9110 §2.5)
    assert answer.header("connection") == "close"
    assert await client.closed()


async def test_http10_client_with_keep_alive_keeps_its_connection(
    client: Client, upstream: Upstream
) -> None:
    for target in ("/svc/a", "/svc/b"):
        answer = await client.exchange(
            f"GET {target} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode()
        )
        assert answer.header("connection") == "keep-alive"
    (first, second) = upstream.requests()
    # Upstream requests are HTTP/1.1 and gain a Host: the service's name.
    assert (first.version, first.header("host"), second.target) == ("1.1", "svc", b"/b")


async def test_connection_close_from_the_client_closes_only_the_client_side(
    proxy: Proxy, upstream: Upstream
) -> None:
    first = await proxy.client()
    answer = await first.exchange(get(extra="Connection: close\r\n"))
    assert answer.header("connection") == "close"
    assert await first.closed()
    second = await proxy.client()
    assert (await second.exchange(get())).status == 200
    assert len(upstream.peers) == 1  # the upstream connection was kept and reused
    assert "connection" not in upstream.requests()[0].names()


async def test_connection_close_from_the_upstream_keeps_the_client_connection(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def closing(peer: Peer) -> None:
        await peer.message()
        peer.send(response(200, b"bye", {"Connection": "close"}))
        await peer.drain()

    upstream = await upstreams(closing)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    for _ in range(2):
        answer = await client.exchange(get())
        assert (bytes(answer.body), answer.header("connection")) == (b"bye", None)
    assert len(upstream.peers) == 2


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_expect_100_continue_is_relayed_to_http11_clients(
    version: str, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def continuing(peer: Peer) -> None:
        while b"\r\n\r\n" not in peer.received:
            assert await peer.silent(0.01) or not peer.eof
        peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        request = await peer.message()
        peer.send(response(201, bytes(request.body)))

    upstream = await upstreams(continuing)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    client.send(post("Content-Length: 4\r\nExpect: 100-continue\r\n", version=version))
    if version == "1.1":
        interim = await client.response()
        assert interim.status == 100
    else:
        assert await client.silent(0.2)  # a 1.0 client gets no 1xx; it sends anyway
    client.send(b"data")
    answer = await client.response()
    assert (answer.status, bytes(answer.body)) == (201, b"data")


async def test_a_client_that_half_closes_still_gets_its_answers(client: Client) -> None:
    client.send(get("/a") + get("/b"))
    client.peer.writer.write_eof()
    answers = [await client.response(), await client.response()]
    assert [a.json()["target"] for a in answers] == ["/a", "/b"]
    assert await client.closed()


async def test_a_client_gone_mid_request_aborts_the_upstream_request(
    upstreams: UpstreamFactory, proxies: ProxyFactory
) -> None:
    got_head, cut = asyncio.Event(), asyncio.Event()

    async def waiting(peer: Peer) -> None:
        await peer.silent(0.1)
        got_head.set()
        if await peer.closed():
            cut.set()

    upstream = await upstreams(waiting)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    client.send(post("Content-Length: 100\r\n", b"partial"))
    await asyncio.wait_for(got_head.wait(), 5)
    client.close()
    await asyncio.wait_for(cut.wait(), 5)
    counted = proxy.engine.metrics.requests
    assert any(status == 499 and flags == "DC" for (_, _, status, flags) in counted)


async def test_a_read_full_of_pipelined_requests_answered_at_once_is_fine(
    client: Client,
) -> None:
    count = 3000  # one read's worth: each is answered (404) while the read is handled
    client.send(get("/x", host="nosuch") * count)
    answers = [await client.response() for _ in range(count)]
    assert {a.status for a in answers} == {404}
    assert (await client.exchange(get())).status == 200
