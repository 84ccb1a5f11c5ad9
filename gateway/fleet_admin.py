"""The admin port of `mesh gateway --workers N`: each page gathered from every worker's."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.fleet_metrics import FleetMetrics
from mesh import metrics

# What a worker's admin port said: its status and body, or why it said nothing.
Answer = tuple[int, bytes] | BaseException


def build(
    admin_ports: list[int], session: aiohttp.ClientSession, own: CollectorRegistry
) -> web.Application:
    """Worker i answers on 127.0.0.1:admin_ports[i]; `session` carries the admin token."""

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

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/mesh/members", members)
    app.router.add_get("/mesh/upstreams", upstreams)
    return app


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
