"""The cost of mTLS on the agent path: caller agent -> callee agent -> service, with and without.

    python -m bench.mtls                          # 3 rounds of 5 s runs at 32 connections
    python -m bench.mtls --rounds 2 --duration 3  # shorter

Three paths to the same fixed upstream (nginx, `hello, world`), side by side in one run,
measured by wrk through a caller agent's outbound proxy:

  no inbound    caller agent ──plain──► service            (MESH_MTLS=off: today's default)
  plain inbound caller agent ──plain──► callee agent ──► service (an inbound listener, no TLS)
  mTLS          caller agent ══mTLS══► callee agent ──► service (MESH_MTLS=strict)

The agents on the path run on the proxy core; wrk, the upstream, nats-server and the
mesh CA on the load core. Keep-alive connections between the agents are reused, so
this measures mTLS's per-request cost (encryption), not one handshake per request.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import targets
from bench.console import BenchError, say
from bench.cores import Cores, pick_cores, pinned
from bench.cpu import background_load, process_cpu
from bench.loopback import http_get, wait_until
from bench.processes import Processes, sigterm_as_exit
from bench.results import RESULTS, environment, write_results
from bench.tables import median, millis, number, ratio, table
from bench.tools import ensure_tools
from bench.wrk import run_wrk
from mesh.node.ports import free_port

# variant -> (the callee's service name, the callee agent's MESH_* settings)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "no inbound": ("direct", {"MESH_MTLS": "off"}),
    "plain inbound": ("plain", {"MESH_MTLS": "off", "MESH_AGENT_INBOUND": "127.0.0.1:{port}"}),
    "mTLS": ("mtls", {"MESH_MTLS": "strict", "MESH_AGENT_INBOUND": "127.0.0.1:{port}"}),
}


@dataclass(frozen=True, slots=True)
class Way:
    """One variant's way in: the caller agent's outbound port, and the URL path to ask."""

    name: str
    port: int
    path: str
    pids: tuple[int, ...]  # the agents on the path, whose CPU is measured
    callee_admin: int


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mtls", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3); medians over them")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (5)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded run before each (1 s)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON")
    args = parser.parse_args(argv)
    if min(args.rounds, args.duration, args.connections) < 1 or args.warmup < 0:
        parser.error("--rounds, --duration and --connections must be at least 1")
    return args


def _mesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "mesh", *args]


def _agent(
    procs: Processes, nats: str, service: str, upstream: int, cpus: str, env: dict[str, str]
) -> tuple[int, int, int]:
    """An agent for `service` in front of the upstream: its pid, outbound and admin ports."""
    admin, outbound = free_port(), free_port()
    command = _mesh(
        "agent",
        *("--service", service, "--port", str(upstream), "--instance-id", f"{service}-1"),
        *("--admin-port", str(admin), "--outbound", f"127.0.0.1:{outbound}"),
    )
    settings = {k: v.format(port=free_port()) for k, v in env.items()}
    child = procs.start(
        f"agent-{service}", pinned(command, cpus), env={"MESH_NATS_URL": nats, **settings}
    )
    return child.pid, outbound, admin


def start_paths(procs: Processes, workdir: Path, nginx: str, cores: Cores, nats: str) -> list[Way]:
    upstream = targets.start_upstream(procs, workdir, nginx, cores.load).port
    ca = str(workdir / "ca")
    subprocess.run(_mesh("ca", "init", "--dir", ca), check=True, capture_output=True)
    procs.start(
        "ca", pinned(_mesh("ca", "serve", "--dir", ca), cores.load), env={"MESH_NATS_URL": nats}
    )
    time.sleep(1.0)  # the CA subscribes before the first agent asks (it exits if it cannot)
    procs.check()
    paths = []
    for name, (service, env) in VARIANTS.items():
        callee, _, admin = _agent(procs, nats, service, upstream, cores.proxy, env)
        caller_env = {"MESH_MTLS": env["MESH_MTLS"], "MESH_AGENT_INBOUND": "127.0.0.1:{port}"}
        if env["MESH_MTLS"] == "off":
            caller_env.pop("MESH_AGENT_INBOUND")
        caller, port, _ = _agent(
            procs, nats, f"caller-{service}", upstream, cores.proxy, caller_env
        )
        paths.append(Way(name, port, f"/{service}/small", (caller, callee), admin))
    for path in paths:
        wait_until(
            f"the {path.name} path to answer",
            lambda path=path: http_get(path.port, path.path) == (200, targets.SMALL_BODY),
            timeout=30,
            processes=procs,
        )
        # The path is the one named: the callee agent's inbound listener served it or not.
        metrics = http_get(path.callee_admin, "/metrics")[1].decode()
        if ('route="inbound"' in metrics) != (path.name != "no inbound"):
            raise BenchError(f"the {path.name} path does not go through what it should")
    return paths


def measure(path: Way, args: argparse.Namespace, cores: Cores, rnd: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{path.port}{path.path}"
    if args.warmup:
        run_wrk(url, connections=args.connections, duration=args.warmup, cpus=cores.load)
    before = sum(process_cpu(pid) for pid in path.pids)
    result = run_wrk(url, connections=args.connections, duration=args.duration, cpus=cores.load)
    cpu = sum(process_cpu(pid) for pid in path.pids) - before
    return {
        "round": rnd,
        "variant": path.name,
        "rps": result.rps,
        "p50_ms": result.p50,
        "p99_ms": result.p99,
        "requests": result.requests,
        "errors": result.non_2xx + result.socket_errors,
        "agents_cpu_seconds": cpu,
        "seconds": result.seconds,
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells = []
    for name in VARIANTS:
        mine = [r for r in runs if r["variant"] == name]
        cells.append(
            {
                "variant": name,
                "rps": median(r["rps"] for r in mine),
                "p50_ms": median(r["p50_ms"] for r in mine),
                "p99_ms": median(r["p99_ms"] for r in mine),
                "errors": sum(r["errors"] for r in mine),
                # CPU of both agents per 1,000 requests: what each request costs them.
                "cpu_ms_per_1k": median(
                    1e6 * r["agents_cpu_seconds"] / r["requests"] for r in mine if r["requests"]
                ),
            }
        )
    return cells


def render(cells: list[dict[str, Any]]) -> str:
    base = cells[0]
    rows = [
        [
            c["variant"],
            number(c["rps"]),
            millis(c["p50_ms"]),
            millis(c["p99_ms"]),
            number(c["cpu_ms_per_1k"], 1),
            f"{ratio(c['rps'], base['rps']):.2f}",
            f"{ratio(c['p99_ms'], base['p99_ms']):.2f}",
            str(c["errors"]),
        ]
        for c in cells
    ]
    header = [
        "path",
        "req/s",
        "p50 ms",
        "p99 ms",
        "agents CPU ms/1k req",
        "req/s ratio",
        "p99 ratio",
        "errors",
    ]
    return table(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    cores = pick_cores()
    tools = ensure_tools(["nginx", "wrk"])
    background = background_load()
    say("background load: " + ", ".join(f"core {c} {b:.0%}" for c, b in background.items()))
    with (
        sigterm_as_exit(),
        tempfile.TemporaryDirectory(prefix="natsmesh-bench-mtls-") as tmp,
        contextlib.ExitStack() as servers,
        Processes(Path(tmp)) as procs,
    ):
        workdir = Path(tmp)
        workdir.chmod(0o755)
        try:
            nats = targets.start_nats(servers, cores)
            paths = start_paths(procs, workdir, tools["nginx"], cores, nats.url)
            runs = []
            for rnd in range(args.rounds):
                order = paths[rnd % len(paths) :] + paths[: rnd % len(paths)]
                for path in order:
                    procs.check()
                    run = measure(path, args, cores, rnd)
                    runs.append(run)
                    say(
                        f"round {rnd + 1} {path.name:<13} {run['rps']:>9,.0f} req/s  "
                        f"p99 {run['p99_ms']:.3f} ms  errors {run['errors']}"
                    )
        except BenchError as exc:
            say(f"failed: {exc}")
            return 1
        except KeyboardInterrupt:
            say("interrupted: stopping everything")
            return 130
    cells = summarise(runs)
    print()
    print(
        f"Caller agent -> [callee agent ->] upstream, c={args.connections}, 13-byte answers; "
        f"medians over {args.rounds} round(s) of {args.duration} s; ratios vs 'no inbound'."
    )
    print(render(cells))
    payload = {
        "bench": "mtls",
        "settings": {k: v for k, v in vars(args).items() if k != "results"},
        "environment": environment(tools),
        "cores": {"proxy": cores.proxy, "load": cores.load},
        "background_load": background,
        "runs": runs,
        "cells": cells,
    }
    say(f"results written to {write_results('mtls', payload, args.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
