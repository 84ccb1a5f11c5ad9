"""Failover in the engine: retries on another instance, what is never retried, limits."""

from __future__ import annotations

import asyncio
import socket

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import Peer, answering, get, response


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def resets(peer: Peer) -> None:
    """Reads a request, then closes without a byte of answer (an instance dying)."""
    await peer.message()
    peer.close()


async def hangs(peer: Peer) -> None:
    """Reads a request and never answers."""
    await peer.message()
    await peer.closed(30)


def post(target: str = "/", body: bytes = b"{}") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: svc\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def test_a_refused_instance_is_retried_elsewhere_and_ejected(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    live = await upstreams()
    proxy = await proxies({"svc": [closed_port(), live.port]}, retry_attempts=2)
    client = await proxy.client()
    for _ in range(10):
        assert (await client.exchange(get())).status == 200
    described = proxy.engine.directory.describe(0.0)["svc"]
    ejected = {i["instance"]: i["ejected"] for i in described["instances"]}  # type: ignore[index]
    assert ejected == {"svc-passing-0": True, "svc-passing-1": False}


@pytest.mark.parametrize(
    ("request_bytes", "status", "flags", "tries"),
    [
        (get(), 502, "URX", 3),  # idempotent: retried (reset is a default condition)
        (post(), 502, "UC", 1),  # it may have reached the instance: never resent
    ],
)
async def test_reset_before_any_answer(
    proxies: ProxyFactory,
    upstreams: UpstreamFactory,
    request_bytes: bytes,
    status: int,
    flags: str,
    tries: int,
) -> None:
    upstream = await upstreams(resets)
    proxy = await proxies({"svc": [upstream.port]}, retry_attempts=2)
    answer = await (await proxy.client()).exchange(request_bytes)
    assert (answer.status, answer.header("x-mesh-flags")) == (status, flags)
    await asyncio.sleep(0.05)
    assert len(upstream.peers) == tries
    if flags == "URX":
        assert answer.json()["attempts"] == 3


async def test_a_post_refused_before_sending_is_retried(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    live = await upstreams()
    proxy = await proxies({"svc": [closed_port(), closed_port(), live.port]}, retry_attempts=2)
    client = await proxy.client()
    for _ in range(6):
        assert (await client.exchange(post())).status == 200


async def test_a_503_is_retried_elsewhere_but_the_last_one_is_relayed_as_it_is(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    unavailable = response(503, b"busy", {"x-from": "upstream"})
    bad = await upstreams(answering(*([unavailable] * 50)))
    good = await upstreams()
    proxy = await proxies({"svc": [bad.port, good.port]}, retry_attempts=2)
    client = await proxy.client()
    for _ in range(10):
        assert (await client.exchange(get())).status == 200
    only_bad = await proxies({"svc": [bad.port]}, retry_attempts=2)
    answer = await (await only_bad.client()).exchange(get())
    assert answer.status == 503
    assert answer.header("x-from") == "upstream"  # not a proxy-made answer
    assert answer.header("x-mesh-flags") is None


async def test_every_attempt_failing_says_urx_and_how_many_were_tried(
    proxies: ProxyFactory,
) -> None:
    proxy = await proxies({"svc": [closed_port(), closed_port(), closed_port()]}, retry_attempts=2)
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (502, "URX")
    assert answer.json()["attempts"] == 3


async def test_a_hung_instance_is_left_after_the_per_try_timeout(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    hung, good = await upstreams(hangs), await upstreams()
    proxy = await proxies({"svc": [hung.port, good.port]}, retry_attempts=2, per_try_timeout=0.2)
    client = await proxy.client()
    loop = asyncio.get_running_loop()
    for _ in range(4):
        started = loop.time()
        assert (await client.exchange(get())).status == 200
        assert loop.time() - started < 1.0


async def test_the_concurrency_limit_answers_503_uo(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    hung = await upstreams(hangs)
    proxy = await proxies({"svc": [hung.port]}, max_requests=1, request_timeout=5)
    first = await proxy.client()
    first.send(get())
    await asyncio.sleep(0.1)
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (503, "UO")
    assert "1 requests to 'svc' already in flight" in answer.json()["detail"]
