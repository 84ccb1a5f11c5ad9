"""User-space instructions per request of the gateway's HAProxy configuration and of HAProxy alone.

    python -m bench.plane_cost             # the gateway's rendered configuration and HAProxy alone
    python -m bench.plane_cost --groups    # also that configuration built up rule group by group

Each configuration runs under callgrind, which counts only while `--requests` keep-alive
requests go through it. The count is deterministic (the same configuration gives the
same count within about 0.1k instructions a request), so each configuration runs once,
and a busy machine does not change it. bench/README.md says what it leaves out.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import targets
from bench.callgrind import version
from bench.console import BenchError, say
from bench.cores import Cores, pick_cores
from bench.plane_count import LogSocket, Row, Tools, count
from bench.plane_groups import BASE, variants
from bench.plane_render import gateway_config
from bench.processes import Processes, sigterm_as_exit
from bench.results import RESULTS, environment, write_results
from bench.tables import number, ratio, table
from bench.tools import ensure_tools
from mesh.config import load
from mesh.node.ports import free_port

ALONE = "HAProxy alone (bench.proxy's)"
RENDERED = "the gateway's configuration"


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plane_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--groups", action="store_true", help="also build the configuration up by rule group"
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests counted (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="requests before those (200)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be at least 1 and --warmup at least 0")
    return args


def configurations(rendered: str, alone: str, groups: bool) -> list[tuple[str, str]]:
    """(name, text) in the order measured: HAProxy alone, then the rendered configuration,
    or with `groups` its base and each group added in turn, the last being all of it."""
    if not groups:
        return [(ALONE, alone), (RENDERED, rendered)]
    built = variants(rendered, targets.SERVICE)
    named = [(v.group if v.group == BASE else f"+ {v.group}", v.text) for v in built]
    named[-1] = (f"{named[-1][0]} = {RENDERED}", named[-1][1])
    return [(ALONE, alone), *named]


def report(rows: list[Row], groups: bool) -> str:
    """The table: each row against HAProxy alone; with `groups`, each group's own share
    (its row less the one above: the groups are added in turn, from the base on)."""
    alone = rows[0].instructions
    lines = []
    for i, row in enumerate(rows):
        added = row.instructions - rows[i - 1].instructions if i >= 2 else math.nan
        lines.append(
            [
                row.name,
                number(row.instructions / 1000, 1),
                *([number(added / 1000, 1)] if groups else []),
                f"{ratio(row.instructions, alone):.2f}x",
                number(row.copies / 1000, 1),
                f"{row.log_lines:.3f}",
            ]
        )
    header = ["configuration", "k instr/req", *(["group adds k"] if groups else [])]
    return table([*header, "vs alone", "memcpy&co k", "log lines/req"], lines)


def run(args: argparse.Namespace, cores: Cores, paths: dict[str, str]) -> tuple[list[Row], str]:
    """Every configuration counted in turn, and the gateway's configuration as rendered."""
    tools = Tools(paths["haproxy"], paths["valgrind"], paths["callgrind_control"])
    with (
        sigterm_as_exit(),
        tempfile.TemporaryDirectory(prefix="natsmesh-plane-cost-") as tmp,
        Processes(Path(tmp)) as procs,
    ):
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers run as nobody and must read the 64 KiB file
        log = LogSocket(workdir / "log.sock")
        try:
            upstream = targets.start_upstream(procs, workdir, paths["nginx"], cores.load)
            port = free_port()
            rendered = gateway_config(
                load(),
                upstream=upstream.port,
                listen=port,
                probe=free_port(),
                log_socket=str(log.path),
            )
            todo = configurations(
                rendered, targets.haproxy_config(port, upstream.port), args.groups
            )
            say(f"{len(todo)} configurations under callgrind on core {cores.proxy}, one pass each")
            rows = [
                count(
                    name,
                    f"{i:02d}",
                    text,
                    port,
                    tools=tools,
                    cpus=cores.proxy,
                    procs=procs,
                    log=log,
                    requests=args.requests,
                    warmup=args.warmup,
                )
                for i, (name, text) in enumerate(todo)
            ]
        finally:
            log.close()
    return rows, rendered


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    try:
        cores = pick_cores()
        paths = ensure_tools(["nginx", "haproxy", "valgrind", "callgrind_control"])
        rows, rendered = run(args, cores, paths)
    except BenchError as exc:
        say(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: stopped everything")
        return 130
    print()
    print(
        f"User-space instructions per request (callgrind, {args.requests} keep-alive GETs of "
        f"{targets.PATHS['small']}; glibc's memcpy/memmove/memset left out, shown apart):"
    )
    print(report(rows, args.groups))
    payload: dict[str, Any] = {
        "bench": "plane_cost",
        "settings": {"groups": args.groups, "requests": args.requests, "warmup": args.warmup},
        "environment": {
            **environment({"nginx": paths["nginx"], "haproxy": paths["haproxy"]}),
            "valgrind": version(paths["valgrind"]),
        },
        "rows": [asdict(row) for row in rows],
        "rendered": rendered,
    }
    say(f"results written to {write_results('plane-cost', payload, args.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
