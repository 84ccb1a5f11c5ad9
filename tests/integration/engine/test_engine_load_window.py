"""Load figures over loopback: what a node's heartbeat would say it forwarded, and to whom."""

from __future__ import annotations

import pytest
from proxying import ProxyFactory, UpstreamFactory
from waiting import until
from wire import answering, closed_port, get, post, response

from mesh.forwarding.load_window import LoadWindow
from mesh.messages import InstanceTraffic

REQUESTS = 20


async def test_a_window_counts_requests_errors_retries_and_ejections_as_they_happened(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    live = await upstreams()
    failing = await upstreams(answering(*[response(503)] * 3))
    proxy = await proxies(
        {"svc": [closed_port(), live.port], "bad": [failing.port]},
        retry_attempts=2,
        outlier_consecutive_5xx=0,
    )
    engine = proxy.engine
    opened = engine.loop.time()
    window = LoadWindow(engine.metrics, engine.directory, own="gateway", interval=1.0, now=opened)
    client = await proxy.client()
    # Enough that the balancer (random among the least loaded) tries the closed port:
    # with six, one run in 64 could miss it (it did, once, in CI).
    for _ in range(REQUESTS):
        assert (await client.exchange(get())).status == 200
    for _ in range(3):  # 503 is not retried by default: the client sees each one
        assert (await client.exchange(get(host="bad"))).status == 503

    cut = engine.loop.time() + 1.0
    load = window(cut)
    assert load.window == pytest.approx(cut - opened)  # however slow the requests were
    svc, bad = load.services["svc"], load.services["bad"]
    # The refused instance failed one attempt and was ejected; its request was retried on
    # the live one, so the service saw every request and no error.
    assert (svc.requests, svc.errors, svc.inflight, sum(svc.latency)) == (
        REQUESTS,
        0,
        0,
        REQUESTS,
    )
    dead, alive = svc.instances["svc-passing-0"], svc.instances["svc-passing-1"]
    assert (dead.requests, dead.errors, dead.ejected) == (1, 1, True)
    assert (alive.requests, alive.errors, alive.ejected) == (REQUESTS, 0, False)
    assert (bad.requests, bad.errors, sum(bad.latency)) == (3, 3, 3)
    assert bad.instances == {
        "bad-passing-0": InstanceTraffic(
            requests=3, errors=3, latency=bad.instances["bad-passing-0"].latency
        )
    }


async def test_a_client_that_leaves_is_no_error_of_the_instance_and_in_flight_until_then(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    silent = await upstreams(answering())  # takes the request, never answers
    proxy = await proxies({"svc": [silent.port]})
    engine = proxy.engine
    window = LoadWindow(
        engine.metrics, engine.directory, own="gateway", interval=1.0, now=engine.loop.time()
    )
    client = await proxy.client()
    # The body is not all there: the client's leaving is not a half-close it waits out.
    client.send(post("Content-Length: 100\r\n", b"partial"))
    counters = engine.directory.counters.of("svc", "svc-passing-0")
    await until(lambda: counters.active == 1)
    waiting = window(engine.loop.time() + 1.0).services["svc"]
    assert (waiting.requests, waiting.inflight) == (0, 1)
    assert waiting.instances["svc-passing-0"].inflight == 1

    client.close()
    await until(lambda: counters.ended == 1)
    left = window(engine.loop.time() + 2.0).services["svc"]
    assert (left.requests, left.errors, left.inflight) == (1, 0, 0)  # 499: not an error
    assert left.instances["svc-passing-0"] == InstanceTraffic(
        requests=1, latency=left.instances["svc-passing-0"].latency
    )
