"""The dashboard page at an admin port's `/`: one self-contained HTML file in the package."""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler

PAGE = "dashboard.html"
STREAM = "/mesh/stream"

# The page runs inline script and style only and talks to its own origin: nothing is
# fetched from elsewhere, whatever a service or instance name contains.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def add(app: web.Application, stream: Handler) -> None:
    """Serve the page at `/` and its live feed at STREAM (server-sent events)."""
    page = resources.files(__package__).joinpath(PAGE).read_bytes()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_HEADERS)

    app.router.add_get("/", index)
    app.router.add_get(STREAM, stream)
