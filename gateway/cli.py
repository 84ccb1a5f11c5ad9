"""`mesh gateway`: run the edge gateway."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from gateway.gateway import run
from gateway.supervisor import supervise
from mesh import config, logs
from mesh.errors import MeshError
from mesh.node import runtime
from mesh.node.children import CANNOT_START


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("gateway", parents=[common], help="run the edge gateway")
    parser.add_argument("--listen", help="HTTP listen address (127.0.0.1:8000)")
    parser.add_argument(
        "--listen-tls", help="HTTPS listen address, beside --listen or instead ('' = off)"
    )
    parser.add_argument("--tls-cert", help="PEM certificate (chain) for --listen-tls")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--admin", help="admin listen address (127.0.0.1:8001)")
    parser.add_argument(
        "--workers", type=int, help="worker processes sharing the ports (number of CPUs)"
    )
    parser.add_argument("--name", help="name the gateway announces (gateway)")
    parser.add_argument(
        "--data-plane",
        choices=("python", "haproxy"),
        help="forwarding engine: python (built in) or haproxy (a local HAProxy 2.6+)",
    )
    # Set by the supervisor for its workers: name the node by index, and serve on the
    # listening sockets it inherited (descriptors, comma-separated, as gateway.edge says).
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--listen-fds", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    settings = config.load(
        nats_url=args.nats_url,
        gateway_listen=args.listen,
        gateway_listen_tls=args.listen_tls,
        gateway_tls_cert=args.tls_cert,
        gateway_tls_key=args.tls_key,
        gateway_admin=args.admin,
        gateway_workers=args.workers,
        gateway_name=args.name,
        gateway_data_plane=args.data_plane,
        log_level=args.log_level,
        preset=args.preset,
    )
    logs.setup(settings.log_level, as_json=settings.log_json)

    workers = settings.gateway_workers or os.cpu_count() or 1
    if settings.gateway_data_plane == "haproxy" and not settings.gateway_workers:
        workers = 1  # HAProxy's threads use the cores; more workers are refused

    async def gateway(stop: asyncio.Event) -> int:
        if args.worker_index is None and workers > 1:
            return await supervise(settings, workers, stop)
        if args.worker_index is None:
            return await run(settings, stop)
        inherited = (
            None if args.listen_fds is None else [int(fd) for fd in args.listen_fds.split(",")]
        )
        try:
            return await run(settings, stop, worker=args.worker_index, inherited=inherited)
        except MeshError as exc:
            # Raised only at start (a port it cannot bind, a certificate it cannot load):
            # a restart would not help.
            print(f"mesh gateway: {exc}", file=sys.stderr)
            return CANNOT_START

    return runtime.run(gateway)
