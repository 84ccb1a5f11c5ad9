"""Failover benchmark: how long a dead or hung instance stays in anyone's view, and who notices.

    python -m bench.failover              # 4 scenarios x 5 runs
    python -m bench.failover --runs 2     # quicker
    python -m bench.failover --runs 20 --scenarios kill9-quiet   # presence's p99
    python -m bench.failover --no-presence --scenarios kill9-quiet,hung-quiet  # before

For kill -9 and for a hung instance (SIGSTOP), each measured twice: with no traffic,
where only heartbeat silence (or the agent's health check) can tell, and under load
through a gateway and an agent's outbound proxy, where the forwarding path's evidence
travels mesh-wide. "Out of every view" means no node observed (the gateway and the
calling agent, the nodes that route to hello) would route to it any more: unroutable in
its view or ejected. hello's own agents do not call hello, so they do not follow it.
Client-visible errors are the failed requests of the load.

The gateway holds the presence watcher (a system-account login on the bench's NATS, as
`mesh up` gives it), unless --no-presence: a killed process closes its NATS connection,
and each node marks it suspect as soon as the watcher's `gone` reaches it. Polling the
admin pages costs milliseconds per observer, so the bench also times the path itself:
each node's `instance.suspect` event carries the wall time its view changed, and the
"suspect" columns are that time minus the kill's, for the gateway and the calling agent.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from bench.console import BenchError, say
from bench.failover_watch import Node, Watchers, out_of_view
from bench.loopback import admin_get, exchange, wait_until
from bench.processes import Processes, sigterm_as_exit
from bench.results import environment, write_results
from bench.tables import table
from mesh import subjects
from mesh.config import load as load_settings
from mesh.messages import Event, decode
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer, find_binary

SCENARIOS = ("kill9-quiet", "kill9-load", "hung-quiet", "hung-load")
# Whose instance.suspect event is timed: the gateway, the calling agent, every observer.
SUSPECT_ON = ("gateway", "caller", "every")
MESH = [sys.executable, "-m", "mesh"]
# Hung instances answer nothing: a per-try timeout lets callers give up on them (and
# count it as evidence); without one they wait for the whole request timeout.
ENV = {"MESH_PER_TRY_TIMEOUT": "0.3", "MESH_LOG_LEVEL": "warning"}


@dataclass
class Instance:
    name: str
    port: int
    service: Any
    agent: Any
    node: Node


@dataclass
class Load:
    """Two bounded request loops (gateway, agent outbound) counting what clients saw."""

    gateway: int
    outbound: int
    rate: float
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for port, proxied in ((self.gateway, False), (self.outbound, True)):
            thread = threading.Thread(target=self._loop, args=(port, proxied), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, port: int, proxied: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        target = "http://hello/bench" if proxied else "/hello/bench"
        gap = 1.0 / self.rate
        deadline = time.monotonic() + 60  # bounded even if the run never ends
        while not self._stop.is_set() and time.monotonic() < deadline:
            error = exchange(conn, target)
            if error is None:
                self.ok += 1
            else:
                self.errors.append(error)
            time.sleep(gap)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


class SuspectTap:
    """Every node's `instance.suspect` events, heard on a NATS connection of its own (in a
    thread with its own event loop): (node, instance, wall time the node's view changed)."""

    def __init__(self, url: str) -> None:
        self.heard: list[tuple[str, str, float]] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._url = url
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    def __enter__(self) -> SuspectTap:
        self._thread.start()
        if not self._ready.wait(10):
            raise BenchError("the suspect tap could not subscribe to NATS")
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = await nats.connect(self._url, name="bench-suspect-tap")

        async def hear(msg: Any) -> None:
            event = decode(msg.subject, msg.data)
            if isinstance(event, Event):
                self.heard.append((event.node, event.instance, event.at))

        await client.subscribe(f"{subjects.PREFIX}.events.instance.suspect.>", cb=hear)
        await client.flush()
        self._ready.set()
        await self._stop.wait()
        await client.close()

    def suspect_after(self, node: str, instance: str, struck_wall: float) -> float:
        """Seconds from the kill to `node`'s view making `instance` suspect (nan: never)."""
        times = [at for n, i, at in self.heard if n == node and i == instance and at >= struck_wall]
        return min(times, default=float("nan")) - struck_wall


def start_instance(procs: Processes, name: str) -> Instance:
    port, admin, outbound = free_port(), free_port(), free_port()
    common = ["--service", "hello", "--port", str(port)]
    service = procs.start(name, [*MESH, "demo-service", *common, "--instance-id", name], env=ENV)
    agent = procs.start(
        f"{name}-agent",
        [
            *MESH,
            "agent",
            *common,
            "--admin-port",
            str(admin),
            "--outbound",
            f"127.0.0.1:{outbound}",
            "--instance-id",
            f"{name}-agent",
        ],
        env=ENV,
    )
    return Instance(name, port, service, agent, Node(f"{name}-agent", admin))


def follows_hello(caller_port: int) -> bool:
    """One call through the caller's outbound proxy: from then on it follows hello."""
    conn = http.client.HTTPConnection("127.0.0.1", caller_port, timeout=5)
    try:
        conn.request("GET", "http://hello/bench")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def routable_everywhere(nodes: list[Node], instance: str) -> bool:
    return all(not out_of_view(node, instance) for node in nodes)


def one_run(
    procs: Processes,
    scenario: str,
    victim: Instance,
    gateway: Node,
    caller: Node,
    caller_port: int,
    rate: float,
    tap: SuspectTap,
) -> dict[str, Any]:
    observers = [gateway, caller]  # the nodes that route to hello
    watchers = Watchers(observers, f"{victim.name}-agent")  # before the load: they take a while
    load = Load(procs_port(gateway), caller_port, rate) if scenario.endswith("load") else None
    if load is not None:
        load.start()
        time.sleep(1.0)
    struck, struck_wall = time.monotonic(), time.time()
    watchers.go()
    if scenario.startswith("kill9"):
        victim.service.signal(signal.SIGKILL)
        victim.agent.signal(signal.SIGKILL)
    elif scenario == "hung-quiet":  # the whole instance freezes, agent included
        victim.service.signal(signal.SIGSTOP)
        victim.agent.signal(signal.SIGSTOP)
    else:  # hung under load: the service freezes, its agent still checks it
        victim.service.signal(signal.SIGSTOP)
    seen = watchers.sightings(struck, within=20)
    if load is not None:
        time.sleep(1.0)
        load.stop()
    for child in (victim.service, victim.agent):
        child.signal(signal.SIGCONT)
        child.signal(signal.SIGKILL)
    time.sleep(0.1)  # the last events on their way to the tap
    victim_id = f"{victim.name}-agent"
    # Agents' instance ids are their labels; the gateway's is its own.
    names = [_GATEWAY_NAME[0], *(node.label for node in observers[1:])]
    everywhere = [tap.suspect_after(name, victim_id, struck_wall) for name in names]
    return {
        "scenario": scenario,
        "suspect_gateway": everywhere[0],
        "suspect_caller": everywhere[1],
        # nan unless every observer's view said suspect (an ejection may come first)
        "suspect_every": float("nan") if any(t != t for t in everywhere) else max(everywhere),
        "first": min(seen.values(), default=float("nan")),
        "every": max(seen.values()) if len(seen) == len(observers) else float("nan"),
        "per_node": seen,
        "requests": (load.ok + len(load.errors)) if load else 0,
        "errors": load.errors if load else [],
    }


_GATEWAY_PORT: dict[int, int] = {}
_GATEWAY_NAME: list[str] = []  # the gateway's instance id, as its events name it


def procs_port(node: Node) -> int:
    return _GATEWAY_PORT[node.admin]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (5)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per path (50)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {SCENARIOS}"
    )
    parser.add_argument(
        "--data-plane",
        choices=("python", "haproxy"),
        default="python",
        help="the gateway's forwarding engine (python); haproxy: out of its HAProxy counts",
    )
    parser.add_argument(
        "--no-presence",
        action="store_true",
        help="no presence watcher: heartbeat silence alone finds a dead process (before)",
    )
    args = parser.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if not set(args.scenarios) <= set(SCENARIOS):
        parser.error(f"--scenarios: of {', '.join(SCENARIOS)}")
    results: list[dict[str, Any]] = []
    with sigterm_as_exit(), tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(find_binary(load_settings().nats_server_bin), presence=True)
        server.start()
        ENV["MESH_NATS_URL"] = server.url
        assert server.accounts is not None
        watcher = {} if args.no_presence else server.accounts.presence_env()
        try:
            with Processes(Path(tmp)) as procs, SuspectTap(server.url) as tap:
                results = run_all(procs, args, watcher, tap)
        finally:
            server.stop()
    report(results, args)
    return 0


def run_all(
    procs: Processes, args: argparse.Namespace, watcher: dict[str, str], tap: SuspectTap
) -> list[dict[str, Any]]:
    instances = [start_instance(procs, f"hello-{i}") for i in range(3)]
    shop_port = free_port()
    procs.start(
        "shop", [*MESH, "demo-service", "--service", "shop", "--port", str(shop_port)], env=ENV
    )
    caller_admin, caller_port = free_port(), free_port()
    procs.start(
        "shop-agent",
        [
            *MESH,
            "agent",
            "--service",
            "shop",
            "--port",
            str(shop_port),
            "--admin-port",
            str(caller_admin),
            "--outbound",
            f"127.0.0.1:{caller_port}",
            "--instance-id",
            "shop-agent",
        ],
        env=ENV,
    )
    gw_port, gw_admin = free_port(), free_port()
    procs.start(
        "gateway",
        [
            *MESH,
            "gateway",
            "--workers",
            "1",
            "--listen",
            f"127.0.0.1:{gw_port}",
            "--admin",
            f"127.0.0.1:{gw_admin}",
            "--data-plane",
            args.data_plane,
        ],
        env={**ENV, **watcher},  # the presence login: a secret, by the environment
    )
    gateway, caller = Node("gateway", gw_admin), Node("shop-agent", caller_admin)
    _GATEWAY_PORT[gw_admin] = gw_port
    wait_until("the gateway serving", lambda: _gateway_name(gw_admin), timeout=30)
    results = []
    serial = 3
    runs = args.runs
    wait_until("the caller to follow hello", lambda: follows_hello(caller_port), timeout=30)
    for scenario in args.scenarios:
        for run in range(runs):
            observers = [gateway, caller]
            for instance in instances:
                wait_until(
                    f"{instance.name} routable",
                    lambda i=instance, o=observers: routable_everywhere(o, f"{i.name}-agent"),
                    timeout=30,
                )
            victim, others = instances[0], instances[1:]
            say(f"{scenario} run {run + 1}/{runs}")
            results.append(
                one_run(procs, scenario, victim, gateway, caller, caller_port, args.rate, tap)
            )
            instances = [*others, start_instance(procs, f"hello-{serial}")]
            serial += 1
            time.sleep(0.5)
    return results


def _gateway_name(admin: int) -> bool:
    """Learns the gateway's instance id from its admin page, once it answers."""
    try:
        _, body = admin_get(admin, "/healthz", timeout=1)
        _GATEWAY_NAME[:] = [json.loads(body)["instance"]]
    except (OSError, ValueError, KeyError):
        return False
    return True


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    summary = {}
    for scenario in args.scenarios:
        runs = [r for r in results if r["scenario"] == scenario]
        suspect = {who: [r[f"suspect_{who}"] for r in runs] for who in SUSPECT_ON}
        every = [r["every"] for r in runs]
        first = [r["first"] for r in runs]
        errors = sum(len(r["errors"]) for r in runs)
        requests = sum(r["requests"] for r in runs)
        summary[scenario] = {
            "first_p50": percentile(first, 0.5),
            "every_p50": percentile(every, 0.5),
            "every_p99": percentile(every, 0.99),
            **{
                f"suspect_{who}_{name}": percentile(values, share)
                for who, values in suspect.items()
                for name, share in (("p50", 0.5), ("p99", 0.99))
            },
            "errors": errors,
            "requests": requests,
        }
        s = summary[scenario]
        rows.append(
            [
                scenario,
                str(len(runs)),
                f"{s['first_p50'] * 1000:.0f}",
                f"{s['every_p50'] * 1000:.0f}",
                f"{s['every_p99'] * 1000:.0f}",
                *(
                    f"{s[f'suspect_{who}_p50'] * 1000:.0f} / {s[f'suspect_{who}_p99'] * 1000:.0f}"
                    for who in SUSPECT_ON
                ),
                f"{errors}/{requests}" if requests else "-",
            ]
        )
    print()
    print(
        table(
            [
                "scenario",
                "runs",
                "first ms p50",
                "every ms p50",
                "every ms p99",
                "suspect on gateway ms p50/p99",
                "on calling agent",
                "on every node",
                "client errors",
            ],
            rows,
        )
    )
    print(
        "\nquiet = no traffic (heartbeats / health checks only); load = requests through a "
        "gateway and an agent (evidence path). first/every: polled admin pages; suspect: "
        "the nodes' own instance.suspect events (nan: none, e.g. ejected first). Presence "
        + ("off." if args.no_presence else "on (the gateway holds the watcher).")
        + f" The gateway's data plane: {args.data_plane}."
    )
    path = write_results(
        "failover",
        {
            "environment": environment({}),
            "runs": args.runs,
            "rate": args.rate,
            "presence": not args.no_presence,
            "data_plane": args.data_plane,
            "summary": summary,
            "results": results,
        },
    )
    say(f"results written to {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench.failover: {exc}", file=sys.stderr)
        sys.exit(1)
