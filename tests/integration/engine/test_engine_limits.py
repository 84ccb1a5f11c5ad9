"""Limits: request heads (431), bodies (413), and chunked bodies held whole under a limit."""

from __future__ import annotations

import asyncio

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import SMUGGLED, Peer, Upstream, get, post, response

HEAD_LIMIT = 2048

TOO_LARGE = {
    "request-line": f"GET /{'a' * HEAD_LIMIT} HTTP/1.1\r\nHost: svc\r\n\r\n".encode(),
    "one-header": get(extra=f"X-Big: {'b' * HEAD_LIMIT}\r\n"),
    "many-headers": get(extra="".join(f"X-H{i}: {'c' * 40}\r\n" for i in range(60))),
    # No line end in sight: refused without waiting for one.
    "endless-header": b"GET / HTTP/1.1\r\nHost: svc\r\nX-Endless: " + b"d" * (HEAD_LIMIT * 4),
    "endless-trailer": post(
        "Transfer-Encoding: chunked\r\n", b"0\r\nX-T: " + b"e" * HEAD_LIMIT * 4
    ),
}


@pytest.mark.parametrize("raw", TOO_LARGE.values(), ids=TOO_LARGE.keys())
async def test_a_head_over_the_limit_is_431(
    raw: bytes, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_header_bytes=HEAD_LIMIT)
    client = await proxy.client()
    for at in range(0, len(raw), 1000):  # in pieces, as a slow client would
        client.send(raw[at : at + 1000])
        await asyncio.sleep(0.005)
    answer = await client.response()
    assert (answer.status, answer.header("x-mesh-flags")) == (431, "DPE")
    assert await client.closed()
    assert not any(r.complete and r.target == b"/p" for r in upstream.requests())
    assert b"X-Big" not in upstream.received
    assert b"X-H59" not in upstream.received


async def test_a_head_just_under_the_limit_passes(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_header_bytes=HEAD_LIMIT)
    client = await proxy.client()
    answer = await client.exchange(get(extra=f"X-Big: {'b' * (HEAD_LIMIT - 200)}\r\n"))
    assert answer.status == 200


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100"])
async def test_a_declared_body_over_the_limit_is_413_before_it_is_sent(
    expect: bool, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=100)
    client = await proxy.client()
    extra = "Expect: 100-continue\r\n" if expect else ""
    answer = await client.exchange(post(f"Content-Length: 101\r\n{extra}"))
    assert (answer.status, answer.header("x-mesh-flags")) == (413, "DPE")
    assert await client.closed()
    assert upstream.received == b""


# With a limit, a chunked body is held until whole: one that turns bad late (too long, or
# framed wrong), which streaming would have half-forwarded, reaches nothing upstream.
LATE_FAULTS = {
    "over-the-limit": (
        100,
        b"40\r\n" + b"x" * 64 + b"\r\n",
        b"40\r\n" + b"y" * 64 + b"\r\n0\r\n\r\n",
        413,
    ),
    "malformed-chunk": (1000, b"4\r\nokay\r\n", b"zz\r\nbad\r\n0\r\n\r\n" + SMUGGLED, 400),
}


@pytest.mark.parametrize(
    ("limit", "first", "rest", "status"), LATE_FAULTS.values(), ids=LATE_FAULTS.keys()
)
async def test_a_chunked_body_gone_bad_late_is_refused_and_none_of_it_reaches_the_upstream(
    limit: int, first: bytes, rest: bytes, status: int, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=limit)
    client = await proxy.client()
    client.send(post("Transfer-Encoding: chunked\r\n", first))
    await asyncio.sleep(0.05)
    client.send(rest)
    answer = await client.response()
    assert (answer.status, answer.header("x-mesh-flags")) == (status, "DPE")
    assert await client.closed()
    assert upstream.received == b""  # held until whole, so not even the head went out


async def test_a_body_at_the_limit_passes(proxies: ProxyFactory, upstream: Upstream) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=100)
    client = await proxy.client()
    answer = await client.exchange(
        post("Transfer-Encoding: chunked\r\n", b"64\r\n" + b"z" * 100 + b"\r\n0\r\n\r\n")
    )
    assert (answer.status, len(answer.json()["body"])) == (200, 100)


async def test_a_held_chunked_body_arriving_in_pieces_goes_upstream_whole_with_trailers(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=1000)
    client = await proxy.client()
    client.send(post("Transfer-Encoding: chunked\r\nTrailer: x-sum\r\n", b"3\r\nabc\r\n"))
    for piece in (b"2\r\nde\r\n", b"0\r\nx-sum: 5\r\n\r\n"):
        await asyncio.sleep(0.05)
        assert upstream.received == b""
        client.send(piece)
    answer = await client.response()
    echoed = answer.json()
    assert (answer.status, echoed["body"], echoed["trailers"]) == (200, "abcde", [["x-sum", "5"]])
    client.send(get("/next"))  # the connection goes on as usual
    assert (await client.response()).json()["target"] == "/next"


async def test_a_held_body_gets_its_100_continue_from_the_proxy(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=1000)
    client = await proxy.client()
    client.send(post("Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n"))
    assert (await client.response()).status == 100
    assert upstream.received == b""
    client.send(b"4\r\ndata\r\n0\r\n\r\n")
    answer = await client.response()
    echoed = answer.json()
    assert (answer.status, echoed["body"]) == (200, "data")
    # The body went whole: the upstream is not asked to agree to it again.
    assert "expect" not in {name.lower() for name, _ in echoed["headers"]}


async def test_a_held_body_that_stalls_is_408_within_the_request_timeout(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=1000, request_timeout=0.3)
    client = await proxy.client()
    client.send(post("Transfer-Encoding: chunked\r\n", b"4\r\ndata\r\n"))
    answer = await client.response(timeout=5)  # the sweep looks once a second
    assert (answer.status, answer.header("x-mesh-flags")) == (408, "DT")
    assert answer.json()["error"] == "ClientTimeout"
    assert await client.closed()
    assert upstream.received == b""


async def test_a_held_body_queued_behind_a_slow_answer_is_not_stalled_by_read_pausing(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def slow_first(peer: Peer) -> None:
        while (request := await peer.message()).complete:
            if request.target == b"/slow":
                await asyncio.sleep(0.2)
            peer.send(response(200, str(len(request.body)).encode()))

    upstream = await upstreams(slow_first)
    big = 600 * 1024  # over the 256 KiB a queued request may buffer before reading pauses
    proxy = await proxies({"svc": [upstream.port]}, max_body_bytes=big)
    client = await proxy.client()
    client.send(get("/slow") + post("Transfer-Encoding: chunked\r\n"))
    for _ in range(big // 8192):
        client.send(b"2000\r\n" + b"b" * 8192 + b"\r\n")
    client.send(b"0\r\n\r\n")
    first, second = await client.response(), await client.response(timeout=5)
    assert (first.status, second.status, bytes(second.body)) == (200, 200, str(big).encode())
