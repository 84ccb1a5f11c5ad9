"""Many agents in one process, for benchmarks that need a big mesh on a small machine.

    python -m bench.fleet --service svc --port 9000 --count 250 --prefix fleet0 --stamps f.json

Each is a real mesh node with its own NATS connection (bench/fleet_node.py says what it
leaves out of `mesh agent`); they share the event loop. The nodes start a few at a time;
a node not up within --start-within ends the process with one line naming it. On SIGTERM
every node's policy stamps, what its reads and writes carried, and its socket's
arrivals (bench/arrivals.py) go to --stamps, then all leave. The process runs at
--nice; the stamper at a real-time priority where allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from pathlib import Path

from bench.arrivals import Arrivals
from bench.fleet_node import FleetNode
from mesh import clock, config, logs
from mesh.errors import MeshError
from mesh.node import runtime

STOP_WITHIN = 4.0  # seconds for every node's leave; the benchmark's stop waits 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--port", type=int, required=True, help="the port all of them announce")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--prefix", default="fleet")
    parser.add_argument("--stamps", type=Path, required=True, help="where stamps go on stop")
    parser.add_argument("--starting", type=int, default=25, help="nodes starting at once")
    parser.add_argument("--start-within", type=float, default=120.0)
    parser.add_argument("--nice", type=int, default=10, help="this process's, not the stamper's")
    args = parser.parse_args()
    settings = config.load()
    logs.setup(settings.log_level, as_json=False)

    async def fleet(stop: asyncio.Event) -> int:
        arrivals = Arrivals(args.stamps.with_suffix(".arrivals.json"))
        # Below the NATS server and the collector: their share of the two cores is what
        # their own hosts would give them; the fleet's nodes wait instead (co-location).
        os.nice(args.nice)
        nodes = [
            FleetNode(settings, f"{args.prefix}-{i}", args.service, args.port, arrivals)
            for i in range(args.count)
        ]
        up: set[str] = set()
        gate = asyncio.Semaphore(args.starting)

        async def start(node: FleetNode) -> None:
            async with gate:
                await node.start(connect_within=args.start_within)
                up.add(node.name)

        began = clock.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(start(node) for node in nodes)), args.start_within
            )
        except (TimeoutError, MeshError, RuntimeError) as exc:  # RuntimeError: see _stamp_socket
            missing = [node.name for node in nodes if node.name not in up]
            why = str(exc) or f"not up within {args.start_within:g} s"
            print(f"fleet {args.prefix}: {len(missing)} nodes down ({why}): {missing[:5]}")
            return 1
        print(f"fleet {args.prefix}: {len(nodes)} nodes up in {clock.monotonic() - began:.1f} s")
        sys.stdout.flush()
        # The nodes' long-lived state is frozen out of the cyclic collector: a real agent's
        # collections walk one node's heap, not 250 of them, and a pause here would land in
        # whichever node's handler ran, counted as that node's own work (the system's).
        gc.freeze()
        await stop.wait()
        stamps = {node.name: node.dump() for node in nodes}
        args.stamps.write_text(json.dumps({"nodes": stamps, "arrivals": arrivals.collect()}))
        await asyncio.wait(
            [asyncio.ensure_future(node.stop()) for node in nodes], timeout=STOP_WITHIN
        )
        return 0

    return runtime.run(fleet)


if __name__ == "__main__":
    raise SystemExit(main())
