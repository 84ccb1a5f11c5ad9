"""Failover in the engine: retries on another instance, what is never retried, limits."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import Peer, answering, closed_port, get, response


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
    instances = [await upstreams(resets) for _ in range(3)]
    proxy = await proxies({"svc": [i.port for i in instances]}, retry_attempts=2)
    answer = await (await proxy.client()).exchange(request_bytes)
    assert (answer.status, answer.header("x-mesh-flags")) == (status, flags)
    await asyncio.sleep(0.05)
    assert sorted(len(i.peers) for i in instances) == [0] * (3 - tries) + [1] * tries
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


@pytest.mark.parametrize(
    ("request_bytes", "silent", "moved"),
    [(get(), True, True), (post(), True, False), (get(), False, False)],
    ids=["get", "post", "get-from-a-draining-instance"],
)
async def test_a_request_waiting_on_an_instance_that_went_silent(
    proxies: ProxyFactory,
    upstreams: UpstreamFactory,
    request_bytes: bytes,
    silent: bool,
    moved: bool,
) -> None:
    """A host cut off by a partition neither answers nor resets: once the view drops it
    for its silence, an idempotent request waiting on it goes to another instance. A POST
    keeps waiting (the instance may only be slow to beat, and the POST may have reached
    it), and so does a request on an instance that left routing but still answers."""
    hung, good = await upstreams(hangs), await upstreams()
    proxy = await proxies({"svc": [hung.port, good.port]}, retry_attempts=2)
    for _ in range(20):  # until one request waits on the hung instance
        client = await proxy.client()
        client.send(request_bytes)
        with contextlib.suppress(TimeoutError):
            assert (await client.response(0.2)).status == 200  # the good one took it
            continue
        break
    assert len(hung.peers) == 1
    proxy.engine.view_changed({("127.0.0.1", hung.port)}, lambda instance: silent)
    if moved:
        assert (await client.response(1.0)).status == 200
    else:
        with pytest.raises(TimeoutError):
            await client.response(0.3)


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


# --- one instance is never tried twice for one request ------------------------------------


async def test_a_lone_refused_instance_is_tried_once(proxies: ProxyFactory) -> None:
    proxy = await proxies({"svc": [closed_port()]}, retry_attempts=2)
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (502, "UF")
    assert proxy.engine.metrics.upstream_resends == {}  # no retry


async def test_a_lone_instance_answering_503_is_not_asked_again(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    busy = await upstreams(answering(*([response(503, b"busy")] * 5)))
    proxy = await proxies({"svc": [busy.port]}, retry_attempts=2)
    assert (await (await proxy.client()).exchange(get())).status == 503
    assert len(busy.requests()) == 1


# --- a response the proxy cannot relay: one rule for every kind of malformation -----------

MALFORMED = {
    "duplicate-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    b"Content-Length: 2\r\n\r\nok",
    "gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"2\r\nok\r\n0\r\n\r\n",
}


@pytest.mark.parametrize(
    ("retry_on", "tries", "flags"),
    [("connect-failure,refused,reset,503", 1, "UPE"), ("gateway-error", 2, "URX")],
    ids=["default", "gateway-error"],
)
@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_response_counts_as_a_502_from_its_instance(
    raw: bytes,
    retry_on: str,
    tries: int,
    flags: str,
    proxies: ProxyFactory,
    upstreams: UpstreamFactory,
) -> None:
    instances = [await upstreams(answering(raw)) for _ in range(2)]
    proxy = await proxies({"svc": [i.port for i in instances]}, retry_attempts=2, retry_on=retry_on)
    answer = await (await proxy.client()).exchange(get())
    assert (answer.status, answer.header("x-mesh-flags")) == (502, flags)
    assert sum(len(i.requests()) for i in instances) == tries
    state = proxy.engine.directory.state("svc")
    assert state is not None
    assert len(state.ejections.failing) == tries  # a gateway error on each instance tried
