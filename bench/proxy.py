"""Proxy benchmark: natsmesh's gateway against nginx, HAProxy and a bare asyncio relay.

    python -m bench.proxy            # the full matrix: 3 rounds of 5 s runs
    python -m bench.proxy --quick    # CI smoke: 1 round, 3 s, 32 connections, small only

Each proxy runs one worker pinned to one core; wrk (one thread) and the fixed upstream
nginx share the other. bench/README.md says what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import targets
from bench.console import BenchError, say
from bench.cores import Cores, pick_cores
from bench.cpu import background_load, busy_share, core_times, others_cpu, others_used, process_cpu
from bench.processes import Processes, sigterm_as_exit
from bench.proxy_summary import (
    BASELINE,
    BUSY_ELSEWHERE,
    HAPROXY_PLANE,
    TAPPED,
    Run,
    cells_table,
    ratios,
    ratios_table,
    summarise,
)
from bench.results import RESULTS, environment, write_results
from bench.targets import Target
from bench.tools import ensure_tools
from bench.wrk import run_wrk

PROXIES = ("natsmesh", "natsmesh-haproxy", "nginx", "haproxy", "passthrough", "direct")
SIZES = tuple(targets.PATHS)
QUIET = 0.1  # a core busier than this before the start means someone else is using it


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of `allowed`, in the order given."""

    def parse(text: str) -> list[str]:
        items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
        if not items or any(item not in allowed for item in items):
            raise argparse.ArgumentTypeError(f"comma-separated, from {','.join(allowed)}")
        return items

    return parse


def _counts(text: str) -> list[int]:
    """An argparse type: comma-separated connection counts."""
    try:
        counts = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("comma-separated whole numbers >= 1, e.g. 1,32,128")
    return counts


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the matrix (3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (5)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded run before each (1 s)")
    parser.add_argument("--connections", type=_counts, default=[1, 32, 128], help="1,32,128")
    parser.add_argument("--sizes", type=_choices(SIZES), default=list(SIZES), help="small,64k")
    parser.add_argument("--proxies", type=_choices(PROXIES), default=list(PROXIES), help="all")
    parser.add_argument(
        "--gateway-workers",
        "--workers",
        type=int,
        default=1,
        help="natsmesh gateway workers (1); above 1 the gateway is not pinned to one core",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke: 1 round, 3 s, 32 connections, small"
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the gateway of git revision REV beside today's (same agent and NATS)",
    )
    parser.add_argument(
        "--tap",
        action="store_true",
        help=f"also measure natsmesh's gateway with one `mesh tap` open ({TAPPED})",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.connections, args.sizes = 1, 3, [32], ["small"]
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or args.gateway_workers < 1:
        parser.error("--rounds, --duration and --gateway-workers must be at least 1")
    if (args.baseline is not None or args.tap) and "natsmesh" not in args.proxies:
        parser.error("--baseline and --tap compare with natsmesh: keep it in --proxies")
    return args


def start_targets(
    names: Sequence[str],
    procs: Processes,
    servers: contextlib.ExitStack,
    workdir: Path,
    tools: dict[str, str],
    cores: Cores,
    workers: int,
    baseline: str | None = None,
    tap: bool = False,
) -> dict[str, Target]:
    upstream = targets.start_upstream(procs, workdir, tools["nginx"], cores.load)
    started = {"direct": upstream}
    if "nginx" in names:
        started["nginx"] = targets.start_nginx(
            procs, workdir, tools["nginx"], upstream.port, cores.proxy
        )
    if "haproxy" in names:
        started["haproxy"] = targets.start_haproxy(
            procs, workdir, tools["haproxy"], upstream.port, cores.proxy
        )
    if "passthrough" in names:
        started["passthrough"] = targets.start_passthrough(procs, upstream.port, cores.proxy)
    if "natsmesh" in names or HAPROXY_PLANE in names:
        nats = targets.start_nats(servers, cores)
        targets.start_agent(procs, nats.url, upstream.port, cores)
    if "natsmesh" in names:
        started["natsmesh"] = targets.start_gateway(procs, nats.url, cores, workers)
    if HAPROXY_PLANE in names:
        started[HAPROXY_PLANE] = targets.start_haproxy_gateway(
            procs, nats.url, cores, tools["haproxy"]
        )
    if "natsmesh" in names:
        if baseline is not None:
            tree = targets.export_tree(baseline, workdir)
            started[BASELINE] = targets.start_gateway(
                procs, nats.url, cores, workers, name=BASELINE, tree=tree
            )
        if tap:  # the same process: its runs alternate with natsmesh's, tap open or not
            started[TAPPED] = targets.with_tap(
                started["natsmesh"], procs, nats.url, cores.load, TAPPED
            )
    extra = [BASELINE, TAPPED]
    return {name: started[name] for name in [*names, *extra] if name in started}


def measure(
    target: Target, size: str, connections: int, args: argparse.Namespace, cores: Cores, rnd: int
) -> Run:
    url = target.url(size)
    with target.around() if target.around is not None else contextlib.nullcontext():
        if args.warmup:  # fills pools and caches; its numbers are dropped
            run_wrk(url, connections=connections, duration=args.warmup, cpus=cores.load)
        cpu_before, others_before = process_cpu(target.pid), others_cpu()
        cores_before, started = core_times(), time.monotonic()
        result = run_wrk(url, connections=connections, duration=args.duration, cpus=cores.load)
        wall = time.monotonic() - started
        cores_after = core_times()
        cpu = process_cpu(target.pid) - cpu_before
        others = others_used(others_before, others_cpu())
    return Run(
        round=rnd,
        proxy=target.name,
        size=size,
        connections=connections,
        rps=result.rps,
        p50_ms=result.p50,
        p99_ms=result.p99,
        requests=result.requests,
        errors=result.non_2xx + result.socket_errors,
        bytes_per_response=result.bytes_per_response,
        cpu_seconds=cpu,
        wall_seconds=wall,
        proxy_core_busy=busy_share(cores_before, cores_after, cores.proxy),
        load_core_busy=busy_share(cores_before, cores_after, cores.load),
        others_vcpu=others / wall,
    )


def run_matrix(
    started: dict[str, Target], args: argparse.Namespace, cores: Cores, procs: Processes
) -> list[Run]:
    names = list(started)
    cells = [(size, n) for size in args.sizes for n in args.connections]
    total, done, runs = args.rounds * len(cells) * len(names), 0, []
    for rnd in range(args.rounds):
        # Rotate who goes first each round, so drift (heat, page cache) is spread evenly.
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for size, connections in cells:
            for name in order:
                procs.check()
                run = measure(started[name], size, connections, args, cores, rnd)
                runs.append(run)
                done += 1
                flag = f"  {run.errors} ERRORS" if run.errors else ""
                if run.others_vcpu > BUSY_ELSEWHERE:
                    flag += f"  (other processes used {run.others_vcpu:.2f} vCPU)"
                say(
                    f"[{done}/{total}] round {rnd + 1} {size:<5} c={connections:<3} "
                    f"{name:<11} {run.rps:>10,.0f} req/s  p99 {run.p99_ms:.3f} ms{flag}"
                )
    return runs


def report(runs: list[Run], started: dict[str, Target], cores: Cores) -> dict[str, Any]:
    cells = summarise(runs)
    compared = ratios(cells)
    print()
    print("Targets:")
    for target in started.values():
        print(f"  {target.name:<13} {target.label:<48} cores {target.cpus}")
    print(
        f"  wrk: 1 thread on core {cores.load}; the upstream nginx, nats-server and the "
        f"agent share core {cores.load} too"
    )
    print()
    print(
        "Medians over rounds. vCPU: the target's own CPU; core P / core L: how busy the "
        "proxy core / the load core were; bound: which of them was saturated."
    )
    print(cells_table(cells, list(started)))
    if compared:
        print()
        print("natsmesh relative to the others (req/s: higher is better; p99: lower is better):")
        print(ratios_table(compared))
    if any(c.errors for c in cells):
        print("\nWARNING: some runs saw non-2xx answers or socket errors; see the errors column.")
    if any(c.others_vcpu > BUSY_ELSEWHERE for c in cells):
        print(
            "\nWARNING: processes outside the benchmark used CPU during some runs (column "
            "'other'); those numbers are low and noisy. Run again on a quiet machine."
        )
    return {"cells": [c.to_json() for c in cells], "ratios": [asdict(r) for r in compared]}


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    cores = pick_cores()
    tools = ensure_tools(["nginx", "haproxy", "wrk"])
    background = background_load()
    say("background load: " + ", ".join(f"core {c} {b:.0%}" for c, b in background.items()))
    if max(background.values()) > QUIET:
        say("WARNING: the machine is busy with something else; the numbers will be low and noisy")
    say(
        f"proxy under test on core {cores.proxy}; wrk and the upstream on core {cores.load}; "
        f"{args.rounds} round(s) x {args.duration} s (+{args.warmup} s warm-up) per run"
    )
    with (
        sigterm_as_exit(),
        tempfile.TemporaryDirectory(prefix="natsmesh-bench-") as tmp,
        # Unwound last: nats-server outlives the mesh processes, so they leave cleanly.
        contextlib.ExitStack() as servers,
        Processes(Path(tmp)) as procs,
    ):
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers run as nobody and must read the 64 KiB file
        try:
            started = start_targets(
                args.proxies,
                procs,
                servers,
                workdir,
                tools,
                cores,
                args.gateway_workers,
                args.baseline,
                args.tap,
            )
            runs = run_matrix(started, args, cores, procs)
        except BenchError as exc:
            say(f"failed: {exc}")
            return 1
        except KeyboardInterrupt:
            say("interrupted: stopping everything")
            return 130
        summary = report(runs, started, cores)
    payload = {
        "bench": "proxy",
        "settings": {
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "sizes": args.sizes,
            "proxies": args.proxies,
            "gateway_workers": args.gateway_workers,
            "baseline": args.baseline,
            "tap": args.tap,
            "wrk_threads": 1,
        },
        "environment": environment(tools),
        "cores": {"proxy": cores.proxy, "load": cores.load},
        "background_load": background,
        "targets": {
            t.name: {"label": t.label, "cpus": t.cpus, "port": t.port} for t in started.values()
        },
        "runs": [run.to_json() for run in runs],
        **summary,
    }
    path = write_results("proxy", payload, args.results)
    say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
