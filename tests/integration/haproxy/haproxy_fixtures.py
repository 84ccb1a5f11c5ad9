"""Shared by the HAProxy process tests: a loopback upstream, configs, and a bounded load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from haproxy_config import haproxy_binary

from mesh.node.ports import free_port

BINARY = haproxy_binary()


def config(listen: int, upstream: int, extra: str = "") -> str:
    return f"""defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{listen}
    default_backend hello
backend hello
    balance roundrobin
    server up 127.0.0.1:{upstream}
{extra}"""


async def upstream() -> AsyncIterator[int]:
    """An HTTP server on loopback answering "ok"; yields its port."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def load(port: int, requests: int, *, concurrency: int = 4) -> list[str]:
    """`requests` GETs through HAProxy, `concurrency` at a time, each on a new connection
    (a client that reuses a connection must retry when an old worker closes it, which
    is HTTP's contract, not the reload's); returns the failures."""
    failures: list[str] = []
    remaining = iter(range(requests))
    timeout = aiohttp.ClientTimeout(total=5)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one_client() -> None:
            for _ in remaining:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/") as response:
                        if response.status != 200 or await response.text() != "ok":
                            failures.append(f"status {response.status}")
                except (aiohttp.ClientError, TimeoutError) as error:
                    failures.append(repr(error))
                await asyncio.sleep(0.01)  # spread over >= 0.5 s, past the reload

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return failures
