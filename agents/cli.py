"""`mesh agent`: run an agent beside one instance of a service."""

from __future__ import annotations

import argparse
import asyncio

from agents.agent import AgentOptions, run
from mesh import config, logs
from mesh.errors import ConfigError
from mesh.node import runtime


def _meta(items: list[str]) -> dict[str, str]:
    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {item!r}: expected key=value")
        meta[key] = value
    return meta


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "agent", parents=[common], help="run the agent beside one service instance"
    )
    parser.add_argument("--service", required=True, help="service name")
    parser.add_argument("--port", type=int, required=True, help="port the service listens on")
    parser.add_argument(
        "--host",
        help="address the service listens on and peers dial "
        "(setting agent_host, default 127.0.0.1)",
    )
    parser.add_argument("--health-path", help="health check path (default /healthz)")
    parser.add_argument("--weight", type=int, default=1, help="relative share of traffic (1)")
    parser.add_argument("--zone", help="zone or rack, for zone-aware balancing (setting zone)")
    parser.add_argument("--version", default="", help="version label, for subsets and canaries")
    parser.add_argument(
        "--meta", action="append", default=[], metavar="K=V", help="metadata label (repeatable)"
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        help="admin port for /healthz and /metrics (15000; 0 = any free port)",
    )
    parser.add_argument("--instance-id", default="", help="instance id (default: random per start)")
    parser.add_argument(
        "--outbound",
        help="outbound proxy address for the local service (127.0.0.1:15001; '' = off)",
    )
    parser.add_argument(
        "--inbound",
        help="inbound listener address in front of the service (setting agent_inbound; "
        "default <host>:15006 with mTLS on)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    settings = config.load(
        nats_url=args.nats_url,
        agent_host=args.host,
        health_path=args.health_path,
        agent_admin_port=args.admin_port,
        agent_outbound=args.outbound,
        agent_inbound=args.inbound,
        log_level=args.log_level,
        preset=args.preset,
        zone=args.zone,
    )
    options = AgentOptions(
        service=args.service,
        port=args.port,
        host=settings.agent_host,
        health_path=settings.health_path,
        admin_port=settings.agent_admin_port,
        weight=args.weight,
        zone=settings.zone,
        version=args.version,
        meta=_meta(args.meta),
        instance_id=args.instance_id,
        outbound=settings.agent_outbound,
    )
    logs.setup(settings.log_level, as_json=settings.log_json)

    async def agent(stop: asyncio.Event) -> int:
        return await run(settings, options, stop)

    return runtime.run(agent)
