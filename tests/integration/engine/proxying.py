"""What the engine's conformance tests share besides fixtures: a proxy under test and its makers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wire import Client, Upstream, answering

from mesh.engine.engine import Engine
from mesh.engine.listener import Listener


@dataclass
class Proxy:
    """An engine with its listener on 127.0.0.1; clients opened here are closed at teardown."""

    engine: Engine
    listener: Listener
    clients: list[Client] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.listener.port

    async def client(self) -> Client:
        client = await Client.connect(self.port)
        self.clients.append(client)
        return client


ProxyFactory = Callable[..., Awaitable[Proxy]]
UpstreamFactory = Callable[..., Awaitable[Upstream]]


async def through(
    proxies: ProxyFactory, upstreams: UpstreamFactory, *raw: bytes, close: bool = False
) -> tuple[Client, Upstream]:
    """A client of a fresh engine whose upstream answers each request with the next `raw`."""
    upstream = await upstreams(answering(*raw, close=close))
    proxy = await proxies({"svc": [upstream.port]})
    return await proxy.client(), upstream
