"""The admin HTTP app of gateway and agent: health, metrics, the view, a gateway's dashboard."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import socket
from collections.abc import Callable

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from mesh import clock, metrics
from mesh.membership import roster
from mesh.membership.view import View
from mesh.observe import dashboard as dashboard_page

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]

# What a client must send to an admin port that has a token (RFC 6750).
SCHEME = "Bearer"
# A browser cannot send a bearer token: for the dashboard it asks its user for a password
# (the token, any user name) when offered Basic (RFC 7617), one challenge per header.
_BASIC = 'Basic realm="mesh admin", charset="UTF-8"'
CHALLENGE = CIMultiDict(
    [("WWW-Authenticate", f'{SCHEME} realm="mesh admin"'), ("WWW-Authenticate", _BASIC)]
)


def credentials(token: SecretStr | None) -> dict[str, str]:
    """The headers a client of an admin port sends: none without a token."""
    return {} if token is None else {"Authorization": f"{SCHEME} {token.get_secret_value()}"}


def build(
    *,
    registry: CollectorRegistry,
    view: Callable[[], View],
    health: HealthCheck,
    upstreams: Callable[[], object] | None = None,
    dashboard: Handler | None = None,
) -> web.Application:
    """With `dashboard` (the live stream's handler), `/` serves the dashboard page."""

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
    if dashboard is not None:
        dashboard_page.add(app, dashboard)
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
        given = _presented(request.headers.get("Authorization", ""))
        # Compared in constant time: how long a wrong token took must not tell how much
        # of it was right.
        if given is not None and hmac.compare_digest(given, token):
            return await handler(request)
        refused()
        return web.json_response(
            {"error": f"this admin port needs Authorization: {SCHEME} <MESH_ADMIN_TOKEN>"},
            status=401,
            headers=CHALLENGE,
        )

    return guard


def _presented(authorization: str) -> bytes | None:
    """The token an Authorization header carries: a bearer token, or a Basic password."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == SCHEME.lower():
        return given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(given.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return None
    return None
