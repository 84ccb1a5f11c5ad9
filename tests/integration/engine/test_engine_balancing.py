"""Balancing through the engine: what each attempt measures reaches the balancer."""

from __future__ import annotations

import asyncio

from proxying import ProxyFactory, UpstreamFactory
from wire import Client, echoing, get

CLIENTS, EACH = 8, 40  # concurrent keep-alive clients, requests each


async def test_least_response_time_avoids_a_10x_slower_instance(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    slow = await upstreams(echoing(0.05))
    fast = [await upstreams(echoing(0.005)) for _ in range(2)]
    ports = [slow.port, *(upstream.port for upstream in fast)]
    proxy = await proxies({"svc": ports}, balance_algorithm="least_response_time")

    async def run(client: Client) -> None:
        for _ in range(EACH):
            assert (await client.exchange(get())).status == 200

    await asyncio.gather(*[run(await proxy.client()) for _ in range(CLIENTS)])
    # Blind to latency (random, round robin) it would get a third.
    share = len(slow.requests()) / (CLIENTS * EACH)
    assert share < 0.10, f"the slow instance got {share:.1%}"
    print(f"\n10x slower instance share: {share:.3f}")
