"""The admin HTTP app of gateway and agent: /healthz, /metrics, /mesh/members, /mesh/upstreams."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
from collections.abc import Callable

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from mesh import clock, metrics
from mesh.membership import roster
from mesh.membership.view import View

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]

# What a client must send to an admin port that has a token (RFC 6750).
SCHEME = "Bearer"
CHALLENGE = {"WWW-Authenticate": f'{SCHEME} realm="mesh admin"'}


def credentials(token: SecretStr | None) -> dict[str, str]:
    """The headers a client of an admin port sends: none without a token."""
    return {} if token is None else {"Authorization": f"{SCHEME} {token.get_secret_value()}"}


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


async def serve(
    app: web.Application,
    sock: socket.socket,
    *,
    token: SecretStr | None,
    refused: Callable[[], None] = lambda: None,
) -> web.AppRunner:
    """Answer on a socket from mesh.addresses.bind: connections are refused until now.

    With a `token`, every request (health probes and scrapes too, and paths that do not
    exist) needs it as a bearer token; others get 401 and `refused()` is called.
    """
    if token is not None:
        app.middlewares.append(_guard(token.get_secret_value().encode(), refused))
    elif not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
        log.warning(
            "admin port %s:%d is reachable from other hosts and has no MESH_ADMIN_TOKEN: "
            "anyone there reads this node's view and metrics",
            *sock.getsockname()[:2],
        )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def _guard(token: bytes, refused: Callable[[], None]) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # Compared in constant time: how long a wrong token took must not tell how much
        # of it was right.
        if scheme.lower() == SCHEME.lower() and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token
        ):
            return await handler(request)
        refused()
        return web.json_response(
            {"error": f"this admin port needs Authorization: {SCHEME} <MESH_ADMIN_TOKEN>"},
            status=401,
            headers=CHALLENGE,
        )

    return guard
