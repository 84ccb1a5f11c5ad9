"""How long a gateway takes to acknowledge a policy revision, with each data plane side by side.

    python -m bench.plane_ack                 # 40 revisions
    python -m bench.plane_ack --revisions 100

One NATS server, one hello instance with its agent, and two gateways: the Python engine
and the HAProxy data plane. Each revision rewrites one Route (`/ack/...` to a new
prefix) and is written to the policy bucket; every node's `policy.applied` event says how
long after the store it acted (`after_ms`, on the node's clock). The HAProxy gateway's
figure includes its reload and the probe request that proves the new configuration
serves. Right after each revision is acknowledged by both, one request through each
gateway must already take the new route: a `stale` count above 0 would mean an
acknowledgement came before the plane served the revision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.console import BenchError, say
from bench.loopback import http_get, wait_until
from bench.processes import Processes, sigterm_as_exit
from bench.results import environment, write_results
from bench.tables import millis, percentile, table
from mesh import subjects
from mesh.bus import Delivery, NatsBus
from mesh.bus.kv import KvStore
from mesh.config import load as load_settings
from mesh.messages import Event, decode
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer, find_binary

MESH = [sys.executable, "-m", "mesh"]
PLANES = ("python", "haproxy")
ENV = {"MESH_LOG_LEVEL": "warning"}
ROUTE = {
    "kind": "Route",
    "name": "ack",
    "match": {"path_prefix": "/ack"},
    "to": [{"service": "hello"}],
}
_ACK_WITHIN = 10.0  # seconds a revision may take to be acknowledged by both gateways


def start_mesh(procs: Processes, nats_url: str) -> dict[str, int]:
    """hello and its agent, and one gateway per data plane: their ports by plane."""
    env = {**ENV, "MESH_NATS_URL": nats_url}
    port = free_port()
    procs.start(
        "hello", [*MESH, "demo-service", "--service", "hello", "--port", str(port)], env=env
    )
    agent = [
        *MESH,
        "agent",
        "--service",
        "hello",
        "--port",
        str(port),
        "--admin-port",
        str(free_port()),
    ]
    procs.start("hello-agent", agent, env=env)
    ports = {}
    for plane in PLANES:
        ports[plane] = free_port()
        command = [*MESH, "gateway", "--data-plane", plane, "--name", f"gw-{plane}"]
        command += ["--workers", "1"]  # one node per data plane
        command += ["--listen", f"127.0.0.1:{ports[plane]}", "--admin", f"127.0.0.1:{free_port()}"]
        procs.start(f"gw-{plane}", command, env=env)
    for plane, gateway in ports.items():

        def routes(gateway: int = gateway) -> bool:
            return http_get(gateway, "/hello/")[0] == 200

        wait_until(f"the {plane} gateway to route to hello", routes, timeout=30, processes=procs)
    return ports


async def measure(nats_url: str, ports: dict[str, int], revisions: int) -> dict[str, Any]:
    bus = NatsBus(load_settings(nats_url=nats_url), name="bench-plane-ack")
    await bus.start(wait=5)
    acks: dict[tuple[str, int], float] = {}  # (plane, revision) -> after_ms
    arrived = asyncio.Event()

    async def hear(delivery: Delivery) -> None:
        event = decode(delivery.subject, delivery.data)
        if isinstance(event, Event) and event.detail.get("key") == "route.ack":
            # A gateway's instance id is its name and a random suffix: gw-<plane>-1a2b3c.
            plane = event.instance.split("-")[1] if event.instance.startswith("gw-") else ""
            if plane in PLANES and event.detail.get("role") == "gateway":
                acks[(plane, int(event.detail["revision"]))] = float(event.detail["after_ms"])
                arrived.set()

    stale = dict.fromkeys(PLANES, 0)
    try:
        await bus.subscribe(f"{subjects.PREFIX}.events.policy.applied.>", hear)
        await bus.flush(2)
        kv = KvStore(bus, subjects.POLICY_BUCKET)
        await kv.open()
        current = 0  # the key's revision: each write expects the one before
        for number in range(revisions):
            prefix = f"/r{number}"
            document = {**ROUTE, "rewrite": {"replace_prefix": prefix}}
            revision = current = await kv.put(
                "route.ack", json.dumps(document).encode(), expected_revision=current
            )
            loop = asyncio.get_running_loop()
            give_up = loop.time() + _ACK_WITHIN
            while not all((plane, revision) in acks for plane in PLANES):
                if loop.time() > give_up:
                    raise BenchError(f"revision {revision} not acknowledged by both gateways")
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), 0.5)
            for plane, port in ports.items():
                status, body = await asyncio.to_thread(http_get, port, "/ack/x")
                if status != 200 or json.loads(body)["path"] != f"{prefix}/x":
                    stale[plane] += 1
        await kv.delete("route.ack", expected_revision=current)
    finally:
        await bus.close()
    return {
        plane: {
            "after_ms": [ms for (p, _), ms in sorted(acks.items()) if p == plane],
            "stale": stale[plane],
        }
        for plane in PLANES
    }


def report(figures: dict[str, Any]) -> None:
    rows = []
    for plane in PLANES:
        after = figures[plane]["after_ms"]
        rows.append(
            [
                plane,
                str(len(after)),
                millis(percentile(after, 0.5)),
                millis(percentile(after, 0.99)),
                millis(max(after, default=float("nan"))),
                str(figures[plane]["stale"]),
            ]
        )
    print()
    print("Store to policy.applied, per gateway (ms, each node's own clock):")
    print(table(["data plane", "revisions", "p50", "p99", "max", "stale"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--revisions", type=int, default=40, help="revisions written (40)")
    args = parser.parse_args()
    if args.revisions < 1:
        parser.error("--revisions: at least 1")
    with sigterm_as_exit(), tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(find_binary(load_settings().nats_server_bin))
        server.start()
        try:
            with Processes(Path(tmp)) as procs:
                ports = start_mesh(procs, server.url)
                say(f"writing {args.revisions} revisions of route.ack")
                figures = asyncio.run(measure(server.url, ports, args.revisions))
        finally:
            server.stop()
    report(figures)
    path = write_results("plane-ack", {"environment": environment({}), "figures": figures})
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
