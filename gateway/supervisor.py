"""`mesh gateway --workers N`: N worker processes serve on this one's sockets; it watches them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway import edge
from mesh import metrics
from mesh.addresses import bind, hostport, parse_hostport
from mesh.config import Settings
from mesh.node import admin, children
from mesh.node.children import Child
from mesh.node.ports import binding, free_port
from mesh.node.supervisor import Restart, Supervisor

log = logging.getLogger(__name__)

RESTART = Restart(first=1.0, cap=1.0)  # a crashing worker is restarted, but not in a tight loop
STOP_GRACE = 15.0  # workers drain for up to 10 s; after this they are killed


class Worker:
    """One worker process: it serves on the supervisor's listening `sockets`, which it
    inherits under the same descriptor numbers each time it is (re)started."""

    def __init__(self, index: int, settings: Settings, sockets: list[socket.socket]) -> None:
        self.index = index
        self.admin_port = free_port()
        s = settings
        fds = [sock.fileno() for sock in sockets]
        tls = []
        if s.gateway_listen_tls:
            cert, key = edge.tls_files(s)
            tls = ["--tls-cert", cert, "--tls-key", key]
        self.child = Child(
            f"gateway worker {index}",
            [
                sys.executable,
                "-m",
                "mesh",
                "gateway",
                "--listen",
                s.gateway_listen,
                "--listen-tls",
                s.gateway_listen_tls,
                *tls,
                "--listen-fds",
                ",".join(map(str, fds)),
                "--admin",
                f"127.0.0.1:{self.admin_port}",
                "--name",
                s.gateway_name,
                "--workers",
                "1",
                "--worker-index",
                str(index),
                "--log-level",
                s.log_level,
            ],
            # Secrets go by the environment: a command line is visible to every user.
            env={**os.environ, **_environment(s)},
            pass_fds=fds,
        )


async def supervise(settings: Settings, workers: int, stop: asyncio.Event) -> int:
    """Run the workers until `stop`; a worker that cannot start ends the gateway (1).

    The certificate is loaded and every port taken before any worker starts, so that a
    bad one is one line naming it, not workers failing over and over. This process
    listens on the gateway's ports, alone (no SO_REUSEPORT: a second gateway started on
    them fails), and its workers accept on those very sockets.
    """
    if settings.gateway_listen_tls:
        edge.tls_context(settings)
    sockets = edge.listening(settings)
    try:
        admin_host, admin_port = parse_hostport(settings.gateway_admin)
        with binding(settings.gateway_admin, "admin address"):
            admin_socket = bind(admin_host, admin_port)
    except BaseException:
        _close(sockets)
        raise
    fleet = [Worker(i, settings, sockets) for i in range(workers)]
    # Its workers' admin ports take the same token as its own: it asks them with it.
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=2), headers=admin.credentials(settings.admin_token)
    )
    # Its own refusals join the merged page as worker="supervisor".
    refused = 0

    def count_refused() -> None:
        nonlocal refused
        refused += 1

    own = metrics.Metrics()
    own.counter(
        "mesh_admin_refused",
        "Admin requests refused for a missing or wrong MESH_ADMIN_TOKEN.",
        (),
        lambda: [((), float(refused))],
    )
    runner = await admin.serve(
        _admin(fleet, session, metrics.registry_for(own)),
        admin_socket,
        token=settings.admin_token,
        refused=count_refused,
    )
    supervisor = Supervisor()
    for worker in fleet:
        supervisor.start(worker.child, RESTART)
    log.info(
        "gateway: %d workers on %s (admin %s)",
        workers,
        ", ".join(hostport(*sock.getsockname()[:2]) for sock in sockets),
        settings.gateway_admin,
    )
    try:
        ended = await supervisor.watch(stop)
    finally:
        # Ours closed first: once the draining workers close theirs, the ports refuse
        # new clients instead of queueing them for nobody.
        _close(sockets)
        await asyncio.to_thread(children.stop, [[w.child for w in fleet]], grace=STOP_GRACE)
        await session.close()
        await runner.cleanup()
    if ended is not None:
        log.error("%s cannot start and a restart would not help: the gateway stops", ended.label)
        return 1
    return 0


def _environment(settings: Settings) -> dict[str, str]:
    env = {"MESH_NATS_URL": settings.nats_url, "MESH_PRESET": settings.preset}
    if settings.admin_token is not None:
        env["MESH_ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
    return env


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _admin(
    fleet: list[Worker], session: aiohttp.ClientSession, own: CollectorRegistry
) -> web.Application:
    async def fetch(worker: Worker, path: str) -> tuple[int, bytes]:
        async with session.get(f"http://127.0.0.1:{worker.admin_port}{path}") as response:
            return response.status, await response.read()

    async def metrics_page(request: web.Request) -> web.Response:
        results = await asyncio.gather(
            *(fetch(w, "/metrics") for w in fleet), return_exceptions=True
        )
        texts = [
            (str(w.index), r[1].decode())
            for w, r in zip(fleet, results, strict=True)
            if not isinstance(r, BaseException) and r[0] == 200  # not an error page
        ]
        texts.append(("supervisor", metrics.render(own).decode()))
        return web.Response(
            body=metrics.merge(texts), headers={"Content-Type": metrics.CONTENT_TYPE}
        )

    async def healthz(request: web.Request) -> web.Response:
        results = await asyncio.gather(
            *(fetch(w, "/healthz") for w in fleet), return_exceptions=True
        )
        up = [not isinstance(r, BaseException) and r[0] == 200 for r in results]
        body = {
            "status": "ok" if all(up) else "failing",
            "workers": len(fleet),
            "healthy_workers": sum(up),
        }
        return web.json_response(body, status=200 if all(up) else 503)

    async def members(request: web.Request) -> web.Response:
        # Every worker keeps its own view; the first that answers speaks for the gateway.
        for worker in fleet:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                status, body = await fetch(worker, "/mesh/members")
                return web.Response(body=body, status=status, content_type="application/json")
        return web.json_response({"error": "no worker answered"}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/mesh/members", members)
    return app
