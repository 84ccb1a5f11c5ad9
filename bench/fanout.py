"""Fan-out of one change to N nodes: a bucket's ordered consumers against core subscribers.

    python -m bench.fanout                       # N = 1,000 nodes, 20 rounds
    python -m bench.fanout --nodes 200 --rounds 5

One private nats-server, N connections (each a mesh NatsBus, all in this process), and
in each round, in turn, one change each way, to every node:

- `kv`: a put to a bucket that every node watches through an ordered consumer, the
  policy feed's path (mesh's KvStore.watch, its idle heartbeat included);
- `core`: one publish to a subject that every node subscribes to;
- `republish`: a put to a bucket whose stream republishes each stored revision to a core
  subject every node subscribes to (a prototype: a node learns each revision by a core
  message carrying the value, its sequence and the previous one, so a missed revision
  shows as a gap; a consumer would serve only a catch-up).

Time: from the publish's write to the publisher's socket to the last node's socket
having it (bench/marks.py, bench/arrivals.py: the earliest of the stamper's peek and the
node's own read). This process runs at --nice, the nats-server and the stamper do not.
Table: per way, p50/p99/max over rounds of the last arrival, the p50 node's arrival,
the NATS server's CPU per round, and the ratios to `core`; and the server's CPU at rest
(the consumers' idle heartbeats). JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.console import BenchError, say
from bench.cpu import process_cpu
from bench.fanout_nodes import WAYS, Fleet, Publisher
from bench.fanout_report import report
from bench.results import environment, write_results
from mesh.config import load as load_settings
from mesh.playground.natsserver import NatsServer, find_binary

PAUSE = 0.2  # seconds between changes: the last one's acks and reads are done
REST = 2.0  # seconds of the server's CPU measured before any change


async def measure(
    server: NatsServer, args: argparse.Namespace, logdir: Path
) -> tuple[float, dict[str, list[dict[str, Any]]]]:
    """The server's CPU share at rest; per way, each round's write, every node's arrival
    and the server's CPU seconds."""
    settings = load_settings(nats_url=server.url)
    fleet = Fleet(settings, args.nodes, logdir)
    publisher = Publisher(settings)
    try:
        await publisher.start()
        say(f"connecting {args.nodes} nodes")
        await fleet.start(args.within)
        os.nice(args.nice)
        # At rest the server's work is the consumers' idle heartbeats (core subscriptions
        # cost nothing until a message comes): what holding N consumers costs.
        before = process_cpu(server.pid or 0)
        await asyncio.sleep(REST)
        at_rest = (process_cpu(server.pid or 0) - before) / REST
        rounds: dict[str, list[tuple[str, float, float]]] = {way: [] for way in WAYS}
        for r in range(args.rounds + 1):
            order = WAYS[r % len(WAYS) :] + WAYS[: r % len(WAYS)]  # no way always first
            for way in order:
                await asyncio.sleep(PAUSE)
                done = await publisher.change(way, r, fleet, server, args.within)
                if r:  # the first round warms every path up
                    rounds[way].append(done)
        fleet.collect()
        return at_rest, {way: [fleet.arrivals_of(*done) for done in rounds[way]] for way in WAYS}
    finally:
        await fleet.stop()
        await publisher.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--within", type=float, default=30.0, help="seconds per step")
    parser.add_argument("--nice", type=int, default=10, help="this process's, once all are up")
    args = parser.parse_args()
    server = NatsServer(find_binary(load_settings().nats_server_bin))
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            at_rest, rounds = asyncio.run(measure(server, args, Path(tmp)))
    finally:
        server.stop()
    result = report(args.nodes, rounds)
    print(f"the NATS server at rest, {args.nodes} consumers held: {1000 * at_rest:.0f} ms CPU/s")
    payload = {"settings": vars(args), "environment": environment({}), **result}
    path = write_results("fanout", {**payload, "server_cpu_ms_per_s_at_rest": 1000 * at_rest})
    say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench.fanout: {exc}", file=sys.stderr)
        sys.exit(1)
