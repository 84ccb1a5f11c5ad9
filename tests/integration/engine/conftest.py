"""Fixtures for the engine's conformance tests: a real engine and listener, scripted upstreams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop
from proxying import Proxy, ProxyFactory, UpstreamFactory
from routes import directory
from wire import Client, Handler, Upstream, echo

from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.engine.listener import Listener
from mesh.metrics import Metrics


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every test runs on uvloop (what mesh processes use) and on the stdlib loop."""
    return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture
async def upstreams() -> AsyncIterator[UpstreamFactory]:
    """Start scripted upstreams: `await upstreams(handler)`; all stopped at teardown."""
    made: list[Upstream] = []

    async def make(handler: Handler = echo) -> Upstream:
        upstream = await Upstream(handler).start()
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.stop()


@pytest.fixture
async def proxies() -> AsyncIterator[ProxyFactory]:
    """Start engines: `await proxies({"svc": [port]}, failing={...}, **settings)`."""
    made: list[Proxy] = []

    async def make(
        services: Mapping[str, list[int]],
        *,
        failing: Mapping[str, list[int]] | None = None,
        strip_mesh_headers: bool = True,
        **settings: Any,
    ) -> Proxy:
        # Conformance is about one attempt: retries are tested on their own (test_failover).
        settings.setdefault("retry_attempts", 0)
        engine = Engine(
            Settings(**settings),
            directory(services, failing, Settings(**settings)),
            Metrics(),
            strip_mesh_headers=strip_mesh_headers,
        )
        listener = Listener(engine, "127.0.0.1", 0)
        await listener.start()
        proxy = Proxy(engine, listener)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        for client in proxy.clients:
            client.close()
        await proxy.listener.stop(0)


@pytest.fixture
async def upstream(upstreams: UpstreamFactory) -> Upstream:
    """An echo upstream."""
    return await upstreams()


@pytest.fixture
async def proxy(proxies: ProxyFactory, upstream: Upstream) -> Proxy:
    """An engine routing service `svc` to the echo upstream."""
    return await proxies({"svc": [upstream.port]})


@pytest.fixture
async def client(proxy: Proxy) -> Client:
    return await proxy.client()
