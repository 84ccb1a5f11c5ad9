"""Policy propagation benchmark: from `apply` writing a revision to the last acknowledgement.

    python -m bench.propagation                 # 3 gateways, 50 agents, 100 applies
    python -m bench.propagation --applies 20    # quicker

The agents are the real agent code, ten to a process (bench/fleet.py); the gateways are
ordinary `mesh gateway` processes. Each apply changes one Service document and waits,
as `mesh policy apply --wait` does, for every live node's policy.applied event. Target:
p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.console import BenchError, say
from bench.processes import Processes, sigterm_as_exit
from bench.results import environment, write_results
from bench.tables import table
from mesh.bus import NatsBus
from mesh.config import load as load_settings
from mesh.forwarding.defaults import default_service
from mesh.membership.census import census, live
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer, find_binary
from policies.acks import AckCollector
from policies.loader import load_text
from policies.plan import plan
from policies.store import PolicyStore

MESH = [sys.executable, "-m", "mesh"]
DOCUMENT = "kind: Service\nname: bench-svc\ntimeouts: {{connect: 1s, request: {request}s}}\n"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(url: str, nodes_expected: int, applies: int) -> dict[str, Any]:
    settings = load_settings(nats_url=url)
    bus = NatsBus(settings, name="bench-propagation")
    await bus.start(wait=10)
    try:
        store = PolicyStore(bus)
        await store.open()
        deadline = time.monotonic() + 60
        while True:
            view = await census(bus, settings.timing, 0.5, asker="bench-propagation")
            nodes = live(view)
            if len(nodes) >= nodes_expected or time.monotonic() > deadline:
                break
        if len(nodes) < nodes_expected:
            raise BenchError(f"only {len(nodes)} of {nodes_expected} nodes came up")
        collector = AckCollector(bus, nodes)
        await collector.start()
        last: list[float] = []
        first: list[float] = []
        incomplete = 0
        for i in range(applies + 1):  # the first one warms the watches up; not counted
            document = DOCUMENT.format(request=f"{5 + i * 0.01:.2f}")
            loaded = load_text(document, defaults=default_service(settings))
            if loaded.errors:
                raise BenchError(f"the benchmark's own document is invalid: {loaded.errors[0]}")
            changes = plan(loaded.documents, await store.stored(), prune=False)
            if not changes:
                raise BenchError(f"apply {i} would change nothing")

            started = time.monotonic()
            revisions = await store.write(changes)
            collector.expect(revisions, started)
            complete = await collector.wait(5.0)
            if i == 0:
                continue
            if not complete:
                incomplete += 1
            times = [
                a.answers[k][3] - started
                for a in collector.nodes.values()
                for k in revisions
                if k in a.answers and a.answers[k][0] >= revisions[k]
            ]
            last.append(max(times))
            first.append(min(times))
        return {
            "nodes": len(nodes),
            "roles": {role: list(nodes.values()).count(role) for role in set(nodes.values())},
            "applies": applies,
            "incomplete": incomplete,
            "last_ms": [t * 1000 for t in last],
            "first_ms": [t * 1000 for t in first],
        }
    finally:
        await bus.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--per-process", type=int, default=10, help="agents per process (10)")
    parser.add_argument("--applies", type=int, default=100)
    args = parser.parse_args()
    with sigterm_as_exit(), tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(find_binary(load_settings().nats_server_bin))
        server.start()
        env = {"MESH_NATS_URL": server.url, "MESH_LOG_LEVEL": "warning"}
        try:
            with Processes(Path(tmp)) as procs:
                port = free_port()
                procs.start(
                    "svc", [*MESH, "demo-service", "--service", "svc", "--port", str(port)], env=env
                )
                for g in range(args.gateways):
                    procs.start(
                        f"gateway-{g}",
                        [
                            *MESH,
                            "gateway",
                            "--workers",
                            "1",
                            "--name",
                            f"gw{g}",
                            "--listen",
                            f"127.0.0.1:{free_port()}",
                            "--admin",
                            f"127.0.0.1:{free_port()}",
                        ],
                        env=env,
                    )
                left, index = args.agents, 0
                while left > 0:
                    count = min(args.per_process, left)
                    procs.start(
                        f"fleet-{index}",
                        [
                            sys.executable,
                            "-m",
                            "bench.fleet",
                            "--service",
                            "svc",
                            "--port",
                            str(port),
                            "--count",
                            str(count),
                            "--prefix",
                            f"fleet{index}",
                        ],
                        env=env,
                    )
                    left, index = left - count, index + 1
                say(f"waiting for {args.gateways} gateways and {args.agents} agents")
                result = asyncio.run(measure(server.url, args.gateways + args.agents, args.applies))
                procs.check()
        finally:
            server.stop()
    report(result)
    return 0


def report(result: dict[str, Any]) -> None:
    last, first = result["last_ms"], result["first_ms"]
    rows = [
        [
            "last acknowledgement",
            f"{statistics.median(last):.1f}",
            f"{percentile(last, 0.99):.1f}",
            f"{max(last):.1f}",
        ],
        [
            "first acknowledgement",
            f"{statistics.median(first):.1f}",
            f"{percentile(first, 0.99):.1f}",
            f"{max(first):.1f}",
        ],
    ]
    print()
    print(
        f"{result['nodes']} nodes ({result['roles']}), {result['applies']} applies, "
        f"{result['incomplete']} without every acknowledgement within 5 s"
    )
    print(table(["from write to", "p50 ms", "p99 ms", "max ms"], rows))
    target = percentile(last, 0.99) <= 100
    print(f"\ntarget p99 <= 100 ms: {'met' if target else 'NOT met'}")
    path = write_results("propagation", {"environment": environment({}), **result})
    say(f"results written to {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench.propagation: {exc}", file=sys.stderr)
        sys.exit(1)
