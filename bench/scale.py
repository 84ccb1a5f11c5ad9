"""Scale benchmark: thousands of instance records against a real gateway and real agents.

    python -m bench.scale                                  # 10,000 records
    python -m bench.scale --instances 1000,10000           # one fresh run per size
    python -m bench.scale --instances 1000 --window 5 --processes 2 --agents 2

Per size, a private nats-server (monitoring on), three real called services
(`mesh demo-service`), `--agents` real agents each in front of a real demo service, and
one gateway. Then `--processes` simulator processes (bench/simulator.py) announce the
records through the mesh's own Announcer: `--callee-instances` records of each called
service point at its real port, the rest are filler services nobody calls. Measured:
CPU of view upkeep (no requests flowing, minus the same process with an empty fleet),
what each observer receives from NATS, the gateway's memory, a second gateway's time
to the full view, the time until `--victims` records silenced at once are out of every
view, and the p99 of requests through the gateway meanwhile. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.console import BenchError, say
from bench.cpu import background_load
from bench.loopback import admin_get, http_get, wait_until
from bench.natsmon import connz
from bench.processes import Processes, sigterm_as_exit
from bench.records import layout, victims
from bench.scale_phases import Observer, quiet_window, silence, until_held
from bench.scale_report import report
from bench.simulator import READY
from bench.timed_load import TimedLoad
from bench.views import alive_at, held
from mesh.config import load as load_settings
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer, find_binary

MESH = [sys.executable, "-m", "mesh"]
CALLEES = ("callee-0", "callee-1", "callee-2")


def start_gateway(procs: Processes, name: str, env: dict[str, str]) -> tuple[Observer, int]:
    port, admin = free_port(), free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"]
    child = procs.start(
        name, [*MESH, "gateway", "--workers", "1", "--name", name, *listen], env=env
    )
    return Observer(name, child, admin, f"gateway:{name}:"), port


def start_agent(procs: Processes, index: int, env: dict[str, str]) -> tuple[Observer, int]:
    """A real demo service and its agent; the agent's outbound proxy is how it calls."""
    service, port, admin, outbound = f"caller-{index}", free_port(), free_port(), free_port()
    common = ["--service", service, "--port", str(port)]
    procs.start(service, [*MESH, "demo-service", *common], env=env)
    agent = [
        *MESH,
        "agent",
        *common,
        *("--admin-port", str(admin), "--outbound", f"127.0.0.1:{outbound}"),
        *("--instance-id", f"{service}-agent"),
    ]
    child = procs.start(f"{service}-agent", agent, env=env)
    return Observer(f"agent-{index}", child, admin, f"agent:{service}:"), outbound


def called(port: int, target: str) -> str:
    """One request's outcome: its status, or why none came (a saturated node times out)."""
    try:
        return str(http_get(port, target, timeout=10)[0])
    except OSError as exc:
        return type(exc).__name__


def held_now(observer: Observer, fleet: Counter[str]) -> int | None:
    """How much of the fleet `observer` holds alive; None if it cannot say in time."""
    try:
        return held(alive_at(observer.admin), fleet)
    except OSError:
        return None


def slow_consumer_lines(server: NatsServer, most: int = 20) -> list[str]:
    if server.log_path is None or not server.log_path.exists():
        return []
    lines = server.log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if "Slow Consumer" in line][:most]


def start_simulators(
    procs: Processes,
    size: int,
    callees: dict[str, int],
    args: argparse.Namespace,
    env: dict[str, str],
) -> list[Any]:
    fleet = [
        *("--total", str(size), "--processes", str(args.processes)),
        *("--per-service", str(args.per_service), "--callee-instances", str(args.callee_instances)),
        *("--callees", ",".join(f"{s}={p}" for s, p in callees.items())),
        *("--victims", str(args.victims), "--ramp", str(args.ramp)),
        *(["--presence"] if args.presence else []),
    ]
    command = [sys.executable, "-m", "bench.simulator", *fleet]
    sims = [
        procs.start(f"sim-{p}", [*command, "--process", str(p)], env=env)
        for p in range(args.processes)
    ]
    for sim in sims:
        wait_until(
            f"{sim.label} to announce",
            lambda s=sim: READY in s.tail(400),
            timeout=120,
            processes=procs,
        )
    return sims


def run_size(
    procs: Processes, server: NatsServer, monitor: int, size: int, args: argparse.Namespace
) -> dict[str, Any]:
    env = {"MESH_LOG_LEVEL": "warning", "MESH_NATS_URL": server.url}
    # The first gateway watches presence, as under `mesh up`: nodes then beat slowly.
    watcher = {**env, **server.presence_env()}
    callee_ports = {service: free_port() for service in CALLEES}
    for service, port in callee_ports.items():
        command = [*MESH, "demo-service", "--service", service, "--port", str(port)]
        procs.start(service, command, env=env)
    agents = [start_agent(procs, i, env) for i in range(args.agents)]
    gateway, gateway_port = start_gateway(procs, "gw0", watcher)
    observers = [gateway, *(agent for agent, _ in agents)]
    callers = {f"caller-{i}": 1 for i in range(args.agents)}
    # Agents hear only what they call: the gateway, which hears everything, holds them all,
    # and each agent is ready once its admin port answers.
    wait_until(
        f"{gateway.label} to hold every agent",
        lambda: held(alive_at(gateway.admin), callers) == args.agents,
        timeout=60,
        processes=procs,
    )
    for agent, _ in agents:
        wait_until(
            f"{agent.label} to answer",
            lambda a=agent: admin_get(a.admin, "/healthz")[0] == 200,
            timeout=60,
            processes=procs,
        )
    time.sleep(args.settle)
    say(f"{size:,}: idle baseline, empty fleet ({args.window:g} s)")
    idle = quiet_window(observers, {}, monitor, args.window)

    records = layout(
        size,
        per_service=args.per_service,
        callees=callee_ports,
        callee_instances=args.callee_instances,
    )
    fleet = Counter(r.service for r in records)
    lost = Counter(r.service for r in victims(records, args.victims))
    started = time.monotonic()
    sims = start_simulators(procs, size, callee_ports, args, env)
    announced = time.monotonic() - started
    say(f"{size:,}: fleet announcing after {announced:.1f} s; waiting for the gateway's view")
    first_view = until_held(gateway, fleet, started, args.full_timeout, monitor)
    # Each agent calls its 3 services once (an agent that learns what it calls on demand
    # knows them from then on), and so does the gateway.
    warm = {
        agent.label: [called(outbound, f"http://{service}/warm") for service in CALLEES]
        for agent, outbound in agents
    }
    warm[gateway.label] = [called(gateway_port, f"/{service}/warm") for service in CALLEES]
    time.sleep(args.settle)
    say(f"{size:,}: quiet window ({args.window:g} s)")
    others = {sim.label: sim.pid for sim in sims}
    if server.pid is not None:
        others["nats-server"] = server.pid
    busy = quiet_window(observers, others, monitor, args.window)
    views = {o.label: held_now(o, fleet) for o in observers}
    subscribed = connz(monitor, subs=True)
    subscriptions = {  # none listed: cut off as a slow consumer at that moment
        o.label: c.get("subscriptions_list", [])
        for o in observers
        for name, c in subscribed.items()
        if name.startswith(o.connection)
    }

    paths = [f"/{service}/load" for service in CALLEES]
    load = TimedLoad(gateway_port, paths, args.rate, limit=int(args.rate * 300), seconds=300)
    load.start()
    say(f"{size:,}: {sum(lost.values())} records silenced at once")
    out = silence(sims, observers, lost, args.kill_timeout)
    say(f"{size:,}: a second gateway starts")
    started = time.monotonic()
    second_gateway, _ = start_gateway(procs, "gw1", env)
    second = until_held(second_gateway, fleet - lost, started, args.full_timeout, monitor)
    load.stop()
    _, varz = http_get(monitor, "/varz")
    return {
        "instances": size,
        "fleet_announcing_s": announced,
        "first_gateway": first_view,
        "idle": idle,
        "busy": busy,
        "warm_calls": warm,
        "views_held": views,
        "subscriptions": subscriptions,
        "killed": sum(lost.values()),
        "out_of_view_s": out,
        "second_gateway": second,
        "load": {
            "rate": args.rate,
            "latencies_s": load.latencies,
            "errors": load.errors,
        },
        "nats_slow_consumers": json.loads(varz).get("slow_consumers"),
        # Whom the server cut off as too slow a reader, and why, in its own words.
        "nats_slow_consumer_lines": slow_consumer_lines(server),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--instances", default="10000", help="fleet sizes, one fresh run each (10000)")
    add("--processes", type=int, default=4, help="simulator processes, one NATS link each (4)")
    add("--agents", type=int, default=3, help="real agents, each calling the 3 services (3)")
    add("--per-service", type=int, default=30, help="records per filler service (30)")
    add("--callee-instances", type=int, default=30, help="records per called service (30)")
    add("--victims", type=int, default=100, help="records silenced at once (100)")
    add("--ramp", type=float, default=1.0, help="seconds over which the fleet starts (1)")
    # At least one covered heartbeat interval (MESH_HEARTBEAT_COVERED_INTERVAL), so that each
    # node beats about once in a window, whatever its phase.
    add("--window", type=float, default=30.0, help="seconds of each CPU/traffic window (30)")
    add("--settle", type=float, default=3.0, help="seconds before each window (3)")
    add("--rate", type=float, default=20.0, help="requests/s through the gateway (20)")
    add("--full-timeout", type=float, default=60.0, help="most seconds for a full view (60)")
    add("--kill-timeout", type=float, default=30.0, help="most seconds for the loss (30)")
    add(
        "--presence",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NATS with presence accounts and a watcher on the first gateway, as `mesh up` "
        "runs it: nodes beat slowly, victims die by their connection (on)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.instances.split(",") if s]
    runs = []
    with sigterm_as_exit():
        for size in sizes:
            background = background_load()
            with tempfile.TemporaryDirectory() as tmp:
                monitor = free_port()
                binary = find_binary(load_settings().nats_server_bin)
                server = NatsServer(binary, extra_args=["-m", str(monitor)], presence=args.presence)
                server.start()
                try:
                    with Processes(Path(tmp)) as procs:
                        result = run_size(procs, server, monitor, size, args)
                        procs.check()
                finally:
                    server.stop()
            runs.append({"background_load": background, **result})
    report(runs, args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench.scale: {exc}", file=sys.stderr)
        sys.exit(1)
