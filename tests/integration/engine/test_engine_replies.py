"""Answers the proxy makes itself: flags, statuses and a JSON body naming what was tried."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import wire
from proxying import ProxyFactory, UpstreamFactory
from wire import Peer, Upstream, get


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full, so connecting to it hangs until a timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname())
    yield server.getsockname()[1]
    filler.close()
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A port where nothing listens (connections are refused)."""
    return wire.closed_port()


async def test_connect_refused_is_502_uf(proxies: ProxyFactory, closed_port: int) -> None:
    proxy = await proxies({"svc": [closed_port]})
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (502, "UF")
    assert answer.json()["instance"] == "svc-passing-0"
    assert "connect failed" in answer.json()["detail"]


async def test_connect_timeout_is_504_ut(proxies: ProxyFactory, full_backlog: int) -> None:
    proxy = await proxies({"svc": [full_backlog]}, connect_timeout=0.2)
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (504, "UT")
    assert answer.json()["detail"] == "connect timed out"


async def silent(peer: Peer) -> None:
    await peer.closed(30)


async def test_no_answer_within_the_request_timeout_is_504_ut(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream = await upstreams(silent)
    proxy = await proxies({"svc": [upstream.port]}, request_timeout=0.3)
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (504, "UT")
    assert answer.json()["instance"] == "svc-passing-0"


async def test_a_response_outliving_the_request_timeout_is_cut(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    async def stalls(peer: Peer) -> None:
        await peer.message()
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await peer.closed(30)

    upstream = await upstreams(stalls)
    proxy = await proxies({"svc": [upstream.port]}, request_timeout=0.3)
    client = await proxy.client()
    answer = await client.exchange(get())
    assert await client.closed()
    assert (answer.status, answer.complete, bytes(answer.body)) == (200, False, b"abc")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (get("/x", host="nosuch"), (404, "NR", "NoRoute")),
        (get("/nosuch/x", host="127.0.0.1"), (404, "NR", "NoRoute")),
        (get("/x", host="down"), (503, "UH", "NoHealthyUpstream")),
        (b"HEAD /x HTTP/1.1\r\nHost: down\r\n\r\n", (503, "UH", "")),
    ],
    ids=["unknown-host", "unknown-path", "no-healthy-instance", "head"],
)
async def test_requests_with_nowhere_to_go_are_answered_at_once(
    raw: bytes, expected: tuple[int, str, str], proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies({"svc": [upstream.port]}, failing={"down": [upstream.port]})
    client = await proxy.client()
    client.send(raw)
    status, flags, error = expected
    if raw.startswith(b"HEAD"):
        answer = await client.head_response()
    else:
        answer = await client.response()
        assert answer.json()["error"] == error
    assert (answer.status, answer.header("x-mesh-flags")) == (status, flags)
    assert (await client.exchange(get())).status == 200  # and the connection goes on
    assert len(upstream.requests()) == 1
