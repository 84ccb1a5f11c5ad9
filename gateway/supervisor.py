"""`mesh gateway --workers N`: N worker processes serve on this one's sockets; it watches them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys

import aiohttp

from gateway import edge, fleet_admin
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
        fleet_admin.build(
            [w.admin_port for w in fleet],
            session,
            metrics.registry_for(own),
            readers=settings.dashboard_readers,
        ),
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
