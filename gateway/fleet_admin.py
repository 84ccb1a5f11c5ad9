"""The admin port of `mesh gateway --workers N`: each page gathered from every worker's."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.fleet_metrics import FleetMetrics
from mesh import metrics
from mesh.observe import dashboard
from mesh.observe.feed import STREAM_HEADERS

# What a worker's admin port said: its status and body, or why it said nothing.
Answer = tuple[int, bytes] | BaseException


# A worker's stream stays open as long as the browser's: only connecting is timed.
_STREAMING = aiohttp.ClientTimeout(total=None, connect=2, sock_read=None)


def build(
    admin_ports: list[int],
    session: aiohttp.ClientSession,
    own: CollectorRegistry,
    *,
    readers: int,
) -> web.Application:
    """Worker i answers on 127.0.0.1:admin_ports[i]; `session` carries the admin token.

    At most `readers` dashboard streams are relayed at once.
    """
    relayed = 0

    async def fetch(port: int, path: str) -> tuple[int, bytes]:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, await response.read()

    async def ask(path: str) -> list[Answer]:
        return await asyncio.gather(*(fetch(p, path) for p in admin_ports), return_exceptions=True)

    fleet_metrics = FleetMetrics()
    # One scrape at a time: pages merged out of order would look like worker restarts.
    scraping = asyncio.Lock()

    async def metrics_page(request: web.Request) -> web.Response:
        async with scraping:
            answers = await ask("/metrics")
            pages: list[tuple[str, str | None]] = [
                (str(index), None if (page := _page(answer)) is None else page.decode())
                for index, answer in enumerate(answers)
            ]
            pages.append(("supervisor", metrics.render(own).decode()))
            body = fleet_metrics.merge(pages)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        answers = await ask("/healthz")
        per_worker = {str(i): _health(a) for i, a in enumerate(answers)}
        down = [i for i, a in per_worker.items() if a["status"] != "ok"]
        body = {
            "status": "failing" if down else "ok",
            "workers": len(admin_ports),
            "healthy_workers": len(admin_ports) - len(down),
            "down": down,
            # As a single gateway's: connected, here only if every worker is.
            "nats": all(a.get("nats") is True for a in per_worker.values()),
            "per_worker": per_worker,
        }
        return web.json_response(body, status=503 if down else 200)

    async def members(request: web.Request) -> web.Response:
        per_worker, down = _views(await ask("/mesh/members"))
        if not per_worker:
            return web.json_response({"error": "no worker answered", "down": down}, status=503)
        # Every worker keeps its own view of the one mesh; the first that answered is on
        # top, in a single gateway's shape, so that its readers (`mesh up`) work on both.
        return web.json_response(
            {**next(iter(per_worker.values())), "per_worker": per_worker, "down": down}
        )

    async def upstreams(request: web.Request) -> web.Response:
        # Not merged: each worker balances, ejects and limits on its own.
        per_worker, down = _views(await ask("/mesh/upstreams"))
        return web.json_response(
            {"per_worker": per_worker, "down": down}, status=200 if per_worker else 503
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        # The dashboard shows one worker's view (each keeps its own of the one mesh): the
        # first that answers. When it stops, the browser reconnects and gets the next.
        nonlocal relayed
        if relayed >= readers:
            return web.json_response(
                {"error": f"{readers} dashboard streams already open (MESH_DASHBOARD_READERS)"},
                status=503,
            )
        relayed += 1
        try:
            for port in admin_ports:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{port}{dashboard.STREAM}"
                    async with session.get(url, timeout=_STREAMING) as upstream:
                        if upstream.status == 200:
                            return await _relay(upstream, request)
            return web.json_response({"error": "no worker streams its view"}, status=503)
        finally:
            relayed -= 1

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/mesh/members", members)
    app.router.add_get("/mesh/upstreams", upstreams)
    dashboard.add(app, stream)
    return app


async def _relay(upstream: aiohttp.ClientResponse, request: web.Request) -> web.StreamResponse:
    """Pass a worker's frames on as they come; a slow browser slows only this relay (the
    worker drops frames for it)."""
    response = web.StreamResponse(headers=STREAM_HEADERS)
    await response.prepare(request)
    # Either side may go: the browser (ConnectionError) or a stopping worker (ClientError).
    with contextlib.suppress(ConnectionError, aiohttp.ClientError):
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    return response


def _page(answer: Answer) -> bytes | None:
    """The body of a worker's page; None from a worker that gave no page (an error page)."""
    if isinstance(answer, BaseException) or answer[0] != 200:
        return None
    return answer[1]


def _unanswered(answer: Answer) -> str:
    """Why a worker gave no page: a dead or restarting one refuses connections."""
    if isinstance(answer, BaseException):
        return f"no answer: {type(answer).__name__}"
    return f"answered {answer[0]}"


def _health(answer: Answer) -> dict[str, object]:
    page = _page(answer)
    if page is None:
        return {"status": "down", "error": _unanswered(answer)}
    body: dict[str, object] = json.loads(page)
    return body


def _views(answers: list[Answer]) -> tuple[dict[str, dict[str, object]], list[str]]:
    """The pages (JSON objects) of the workers that answered, by index; the others' indexes."""
    per_worker: dict[str, dict[str, object]] = {}
    down = []
    for index, answer in enumerate(answers):
        page = _page(answer)
        if page is None:
            down.append(str(index))
        else:
            per_worker[str(index)] = json.loads(page)
    return per_worker, down
