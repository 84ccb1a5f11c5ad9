"""Keep-alive pools per instance: reuse, the idle limit and timeout, stale connections."""

from __future__ import annotations

import asyncio

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import Client, Peer, Upstream, echo, echo_body, get, response


async def test_connections_are_reused_across_requests_and_clients(
    proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]})
    for _ in range(2):
        client = await proxy.client()
        for _ in range(3):
            assert (await client.exchange(get())).status == 200
    assert len(upstream.peers) == 1
    assert proxy.engine.pools.opened == 1


async def test_idle_connections_beyond_the_limit_are_closed(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    arrived: list[Peer] = []
    closed: list[Peer] = []
    all_in = asyncio.Event()

    async def held(peer: Peer) -> None:
        request = await peer.message()
        arrived.append(peer)
        if len(arrived) == 4:
            all_in.set()
        await all_in.wait()  # four connections busy at once
        peer.send(response(200, echo_body(request)))
        if await peer.closed(30):
            closed.append(peer)

    upstream = await upstreams(held)
    proxy = await proxies({"svc": [upstream.port]}, pool_max_idle=2)
    clients = [await proxy.client() for _ in range(4)]
    answers = await asyncio.gather(*(c.exchange(get()) for c in clients))
    assert [a.status for a in answers] == [200] * 4
    for _ in range(100):  # bounded: up to 1 s for the two closes to arrive
        if len(closed) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(closed) == 2
    assert proxy.engine.pools.idle_count() == 2


async def test_connections_idle_past_the_timeout_are_closed(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    closed = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await echo(peer)
        closed.set()

    upstream = await upstreams(handler)
    proxy = await proxies({"svc": [upstream.port]}, pool_idle_timeout=0.1)
    client = await proxy.client()
    await client.exchange(get())
    await asyncio.sleep(0.15)
    proxy.engine.sweep()  # what the listener's housekeeping does every second
    await asyncio.wait_for(closed.wait(), 5)
    assert proxy.engine.pools.idle_count() == 0
    assert (await client.exchange(get())).status == 200
    assert len(upstream.peers) == 2


async def test_an_idle_connection_the_upstream_closed_is_not_used(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def one_each(peer: Peer) -> None:
        request = await peer.message()
        peer.send(response(200, echo_body(request)))  # keep-alive, then closes anyway
        await peer.drain()

    upstream = await upstreams(one_each)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    for _ in range(3):
        assert (await client.exchange(get())).status == 200
        await asyncio.sleep(0.05)  # the close arrives while idle
    assert len(upstream.peers) == 3
    assert [len(p.received) > 0 for p in upstream.peers] == [True] * 3


def stale_after_first() -> object:
    """First connection: answers one request, then closes on the next without answering
    (an upstream's keep-alive timeout racing the request); later connections echo."""
    connections = 0

    async def handler(peer: Peer) -> None:
        nonlocal connections
        connections += 1
        if connections > 1:
            await echo(peer)
            return
        request = await peer.message()
        peer.send(response(200, echo_body(request)))
        await peer.drain()
        await peer.silent(5)  # the next request's first bytes
        peer.close()

    return handler


STALE = {
    "no-body": (get("/again"), 200),
    "small-body": (b"POST /again HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello", 200),
    "small-chunked-body": (
        b"POST /again HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        200,
    ),
    "body-too-large-to-resend": (
        b"POST /again HTTP/1.1\r\nHost: svc\r\nContent-Length: 40\r\n\r\n" + b"x" * 40,
        502,
    ),
}


@pytest.mark.parametrize(("raw", "status"), STALE.values(), ids=STALE.keys())
async def test_a_request_a_stale_connection_swallowed_is_sent_once_more(
    raw: bytes, status: int, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream = await upstreams(stale_after_first())
    proxy = await proxies({"svc": [upstream.port]}, retry_body_bytes=32)
    client = await proxy.client()
    assert (await client.exchange(get("/first"))).status == 200
    answer = await client.exchange(raw)
    assert answer.status == status
    if status == 200:
        assert answer.json()["body"] == ("hello" if b"hello" in raw else "")
        # The stale connection swallowed it unanswered; the fresh one got it whole, once.
        assert [(r.target, r.complete) for r in upstream.requests(1)] == [(b"/again", True)]
        assert len(upstream.peers) == 2
    else:
        assert (answer.header("x-mesh-flags"), answer.json()["error"]) == ("UC", "UpstreamReset")


async def test_a_stale_connection_is_retried_once_only(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def then_always_closes(peer: Peer) -> None:
        if len(upstream.peers) == 1:
            request = await peer.message()
            peer.send(response(200, echo_body(request)))
            await peer.drain()
        await peer.silent(5)
        peer.close()

    upstream = await upstreams(then_always_closes)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    assert (await client.exchange(get())).status == 200
    answer = await client.exchange(get("/again"))
    assert (answer.status, answer.header("x-mesh-flags")) == (502, "UC")
    assert len(upstream.peers) == 2
    assert proxy.engine.metrics.upstream_resends == {("svc", "stale-connection"): 1}


async def test_no_retry_when_the_upstream_had_started_answering(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def half_then_gone(peer: Peer) -> None:
        request = await peer.message()
        peer.send(response(200, echo_body(request)))
        await peer.message()
        peer.send(b"HTTP/1.1 20")
        await peer.drain()
        peer.close()

    upstream = await upstreams(half_then_gone)
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    await client.exchange(get())
    answer = await client.exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (502, "UC")
    assert len(upstream.peers) == 1


async def test_bytes_after_a_response_make_the_connection_unusable(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def chatty(peer: Peer) -> None:
        while (request := await peer.message()).complete:
            peer.send(response(200, echo_body(request)) + b"HTTP/1.1 200 OK\r\n")

    upstream = await upstreams(chatty)
    proxy = await proxies({"svc": [upstream.port]})
    client: Client = await proxy.client()
    for target in ("/1", "/2"):
        answer = await client.exchange(get(target))
        assert (answer.status, answer.json()["target"]) == (200, target)
    assert len(upstream.peers) == 2
