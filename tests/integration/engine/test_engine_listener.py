"""Graceful stop: stop accepting, finish in-flight requests up to a deadline, then return."""

from __future__ import annotations

import asyncio

from proxying import ProxyFactory, UpstreamFactory
from wire import Client, Peer, echo_body, get, response


def slow(seconds: float) -> object:
    async def handler(peer: Peer) -> None:
        while (request := await peer.message(timeout=30)).complete:
            if request.target != b"/fast":
                await asyncio.sleep(seconds)
            peer.send(response(200, echo_body(request)))

    return handler


async def test_stop_drains_in_flight_requests_and_closes_idle_connections(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream = await upstreams(slow(0.3))
    proxy = await proxies({"svc": [upstream.port]})
    idle = await proxy.client()
    assert (await idle.exchange(get("/fast"))).status == 200
    busy = await proxy.client()
    busy.send(get("/slow") + get("/queued-behind-it"))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(proxy.listener.stop(5.0))
    assert await idle.closed(1.0)  # at once, long before the slow answer
    assert not stopping.done()
    answer = await busy.response()
    assert (answer.status, answer.header("connection")) == (200, "close")
    assert await busy.closed()
    assert await asyncio.wait_for(stopping, 2) == 0
    try:
        late = await Client.connect(proxy.port)
    except OSError:
        pass  # refused: the listening socket is gone
    else:
        assert await late.closed()


async def test_stop_cuts_what_is_still_running_at_the_deadline(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream = await upstreams(slow(10))
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    client.send(get("/slow"))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await proxy.listener.stop(0.2) == 1
    # uvloop's clock steps in milliseconds: the float difference can land a hair under 0.2
    assert 0.199 <= loop.time() - started < 2.0
    answer = await client.response()
    assert not answer.complete
    assert await client.closed()


async def test_clients_idle_past_their_timeout_are_closed(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream = await upstreams(slow(0.3))
    proxy = await proxies({"svc": [upstream.port]}, client_idle_timeout=0.1)
    idle, busy = await proxy.client(), await proxy.client()
    assert (await idle.exchange(get("/fast"))).status == 200
    busy.send(get("/slow"))
    await asyncio.sleep(0.15)
    proxy.engine.sweep()  # what the listener's housekeeping does every second
    assert await idle.closed(1.0)
    assert (await busy.response()).status == 200  # a request in flight is not idleness
