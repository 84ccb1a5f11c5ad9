"""Policy propagation benchmark: from `apply` writing a revision to the last acknowledgement.

    python -m bench.propagation                          # 3 gateways, 50 agents, 20 applies
    python -m bench.propagation --agents 997             # 1,000 nodes
    python -m bench.propagation --applies 5              # quicker

The gateways are ordinary `mesh gateway` processes; the agents are real mesh nodes, many
to a process (bench/fleet.py, bench/fleet_node.py). Each apply changes one Service
document and waits, as `mesh policy apply --wait` does, for every node's policy.applied
event: a node that does not answer fails the run, by name. The time to the last answer
is split into what the system costs and what co-locating nodes adds
(bench/propagation_split.py). Target: p99 <= 100 ms for the system's part.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.arrivals import real_time
from bench.console import BenchError, say
from bench.cpu import process_cpu
from bench.processes import Processes, sigterm_as_exit
from bench.propagation_run import CpuProbe, Expected, apply_all, used, wait_for_nodes
from bench.propagation_split import PARTS, summary
from bench.propagation_stamps import Heard, answers, read_stamps
from bench.results import environment, write_results
from bench.tables import millis, table
from mesh.bus import NatsBus
from mesh.config import load as load_settings
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer, find_binary

MESH = [sys.executable, "-m", "mesh"]
TARGET_MS = 100.0
REST = 2.0  # seconds of CPU measured with no apply running: the mesh's upkeep


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_probe(server: NatsServer, procs: Processes) -> CpuProbe:
    """CPU seconds so far of the NATS server, the gateways and the fleets (with stampers)."""
    groups: dict[str, list[int]] = {"nats-server": [server.pid or 0]}
    for child in procs.children:
        group = child.label.rstrip("0123456789-")  # gateway-2 -> gateway, fleet3 -> fleet
        if group != "svc":  # the demo service: nobody calls it
            groups.setdefault(group, []).append(child.popen.pid if child.popen else 0)

    def probe() -> dict[str, float]:
        return {group: sum(process_cpu(pid) for pid in pids) for group, pids in groups.items()}

    return probe


async def measure(
    url: str, expected: Expected, args: argparse.Namespace, procs: Processes, cpu: CpuProbe
) -> Any:
    settings = load_settings(nats_url=url)
    nodes = await wait_for_nodes(settings, expected, args.start_within, procs.check)
    bus = NatsBus(settings, name="bench-propagation")
    await bus.start(wait=10)
    # The collector's socket is stamped as a fleet node's is: its own wait is not the system's.
    heard = Heard.watching(bus, procs.logdir / "collector.arrivals.json")
    # The collector (a `mesh policy apply --wait`) on a host of its own, like NATS: behind
    # the fleets, its reads would lag and the server's writes to it wait in buffers.
    heard.loop_scheduling = real_time(0, 1) if args.nats_first else "normal"
    # So do the gateways: not stamped, their whole time counts as the system's.
    heard.gateways_scheduling = "normal"
    if args.nats_first:
        gateways = [c for c in procs.children if c.label.startswith("gateway")]
        heard.gateways_scheduling = ", ".join(real_time(c.pid or 0, 1) for c in gateways)
    try:
        before, ours = cpu(), time.process_time()
        await asyncio.sleep(REST)
        ours = time.process_time() - ours
        at_rest = {
            g: spent / REST for g, spent in {**used(before, cpu()), "collector": ours}.items()
        }
        load = load_average()
        applies = await apply_all(bus, settings, nodes, args.applies, args.ack_within, cpu)
        return nodes, applies, [load, load_average()], at_rest, heard
    finally:
        heard.collect()
        await bus.close()


def start_children(
    procs: Processes, env: dict[str, str], args: argparse.Namespace, watcher: dict[str, str]
) -> Expected:
    port = free_port()
    procs.start("svc", [*MESH, "demo-service", "--service", "svc", "--port", str(port)], env=env)
    for g in range(args.gateways):
        listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        gateway = ["gateway", "--workers", "1", "--name", f"gw{g}"]
        procs.start(
            f"gateway-{g}",
            [*MESH, *gateway, "--listen", listen, "--admin", admin],
            env={**env, **(watcher if g == 0 else {})},
        )
    fleets: dict[str, list[str]] = {}
    left, index = args.agents, 0
    while left > 0:
        count, label = min(args.per_process, left), f"fleet{index}"
        fleet = ["--service", "svc", "--port", str(port), "--count", str(count)]
        fleet += ["--prefix", label, "--stamps", str(procs.logdir / f"{label}.stamps.json")]
        fleet += ["--start-within", f"{args.start_within:g}"]
        procs.start(label, [sys.executable, "-m", "bench.fleet", *fleet], env=env)
        fleets[label] = [f"{label}-{i}" for i in range(count)]
        left, index = left - count, index + 1
    return Expected(fleets, args.gateways)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--per-process", type=int, default=250, help="agents per process")
    parser.add_argument("--applies", type=int, default=20)
    parser.add_argument("--start-within", type=float, help="seconds (default 30 + 0.1/agent)")
    parser.add_argument("--ack-within", type=float, default=10.0, help="seconds per apply")
    parser.add_argument("--raw", action="store_true", help="every node's answer in the JSON")
    parser.add_argument(
        "--heartbeat",
        type=float,
        help="every node's heartbeat interval, s (MESH_HEARTBEAT_INTERVAL; default the preset's)",
    )
    parser.add_argument(
        "--nats-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run nats-server, the gateways and the collector at SCHED_FIFO, ahead of the "
        "fleets, as on hosts of their own (on)",
    )
    parser.add_argument(
        "--presence",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NATS with presence accounts and a watcher on the first gateway, as `mesh up` "
        "runs it: nodes beat every MESH_HEARTBEAT_COVERED_INTERVAL (on)",
    )
    args = parser.parse_args()
    args.start_within = args.start_within or 30 + 0.1 * args.agents
    with sigterm_as_exit(), tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(find_binary(load_settings().nats_server_bin), presence=args.presence)
        server.start()
        # NATS runs on hosts of its own in a deployment: here it goes ahead of the 1,000
        # co-located nodes, or their CPU would count as its fan-out and ack times.
        server_scheduling = real_time(server.pid or 0, 1) if args.nats_first else "normal"
        # The first gateway watches presence, as under `mesh up`: nodes then beat slowly.
        watcher = server.presence_env()
        env = {"MESH_NATS_URL": server.url, "MESH_LOG_LEVEL": "warning"}
        if args.heartbeat is not None:
            env["MESH_HEARTBEAT_INTERVAL"] = f"{args.heartbeat:g}"
        try:
            with Processes(Path(tmp)) as procs:
                expected = start_children(procs, env, args, watcher)
                say(f"waiting for {args.gateways} gateways and {args.agents} agents")
                cpu = cpu_probe(server, procs)
                try:
                    nodes, applies, load, at_rest, heard = asyncio.run(
                        measure(server.url, expected, args, procs, cpu)
                    )
                except BenchError as exc:  # what the gateways said is the likeliest why
                    tails = [
                        f"{c.label}: {c.tail(300)}" for c in procs.children if "gateway" in c.label
                    ]
                    raise BenchError("\n".join([str(exc), *tails])) from None
                procs.check()
                procs.stop_all()
                stamps, scheduling = read_stamps(Path(tmp), list(expected.fleets))
        finally:
            server.stop()
    split_answers, seen = answers(applies, stamps, heard)
    result = summary(split_answers)
    result["cpu_ms_per_apply"] = {
        group: 1000 * sum(a.cpu[group] for a in applies) / len(applies) for group in at_rest
    }
    result["cpu_ms_per_second_at_rest"] = {group: 1000 * v for group, v in at_rest.items()}
    if args.raw:
        result["answers"] = split_answers
    result["stampers"] = [f"collector: {heard.scheduling}", *scheduling]
    result["collector_scheduling"] = heard.loop_scheduling
    result["gateways_scheduling"] = heard.gateways_scheduling
    result["nats_server_scheduling"] = server_scheduling
    result["collector_receive_buffer"] = heard.receive_buffer
    report(args, nodes, result, seen, load)
    return 0


def report(
    args: argparse.Namespace,
    nodes: dict[str, str],
    result: dict[str, Any],
    seen: dict[str, dict[str, int]],
    load: list[float],
) -> None:
    def row(label: str, spread: dict[str, float]) -> list[str]:
        return [label, millis(spread["p50"]), millis(spread["p99"]), millis(spread["max"])]

    roles = {role: list(nodes.values()).count(role) for role in sorted(set(nodes.values()))}
    print(
        f"\n{len(nodes)} nodes {roles}, {args.per_process} agents per process, "
        f"{args.applies} applies, every acknowledgement heard; load average {load[0]:.1f} "
        f"before, {load[1]:.1f} after"
    )
    header = ["write to the last ack", "p50 ms", "p99 ms", "max ms"]
    print(
        table(
            header,
            [
                row("measured", result["last"]),
                row("system (one agent per host)", result["system_last"]),
                row("co-location (on the collector's socket - system)", result["colocation"]),
                row("the collector's own wait", result["collect"]),
            ],
        )
    )
    print()
    print(
        table(
            ["each node's answer", "p50 ms", "p99 ms", "max ms"],
            [row(part, result["parts"][part]) for part in PARTS],
        )
    )
    per_apply, at_rest = result["cpu_ms_per_apply"], result["cpu_ms_per_second_at_rest"]
    cpu_rows = [[g, millis(per_apply[g]), millis(at_rest[g])] for g in per_apply]
    print()
    print(table(["CPU", "ms per apply", "ms/s at rest"], cpu_rows))
    print(
        f"\nfirst seen on the nodes' sockets {seen['arrival']}, on the collector's {seen['heard']}"
    )
    stampers = "; ".join(result["stampers"])
    print(f"stampers: {stampers}; nats-server: {result['nats_server_scheduling']}")
    print(
        f"collector: {result['collector_scheduling']}, receive buffer "
        f"{result['collector_receive_buffer']:,} bytes; gateways: {result['gateways_scheduling']}"
    )
    if seen["missing"] or seen["arrival"].get("none") or seen["heard"].get("none"):
        print(f"steps nobody saw (their wait counted as the system's): {seen}")
    met = result["system_last"]["p99"] <= TARGET_MS
    print(f"\ntarget system p99 <= {TARGET_MS:g} ms: {'met' if met else 'NOT met'}")
    settings = dict(vars(args))
    payload = {
        "settings": settings,
        "environment": environment({}),
        "load_average": load,
        "nodes": len(nodes),
        "roles": roles,
        "seen": seen,
        **result,
    }
    path = write_results("propagation", payload)
    say(f"results written to {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench.propagation: {exc}", file=sys.stderr)
        sys.exit(1)
