"""The admin HTTP app of gateway and agent: /healthz, /metrics, /mesh/members, /mesh/upstreams."""

from __future__ import annotations

import socket
from collections.abc import Callable

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh import clock, metrics
from mesh.membership import roster
from mesh.membership.view import View

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


def build(
    *,
    registry: CollectorRegistry,
    view: Callable[[], View],
    health: HealthCheck,
    upstreams: Callable[[], object] | None = None,
) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        ok, detail = health()
        return web.json_response(
            {"status": "ok" if ok else "failing", **detail}, status=200 if ok else 503
        )

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(registry), headers={"Content-Type": metrics.CONTENT_TYPE}
        )

    async def members(request: web.Request) -> web.Response:
        return web.Response(
            body=roster.to_json(view(), clock.monotonic()), content_type="application/json"
        )

    async def upstream_state(request: web.Request) -> web.Response:
        body = upstreams() if upstreams is not None else {}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/mesh/members", members)
    app.router.add_get("/mesh/upstreams", upstream_state)
    return app


async def serve(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Answer on a socket from mesh.node.ports.bind: connections are refused until now."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner
