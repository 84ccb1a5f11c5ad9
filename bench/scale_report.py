"""bench.scale's figures: the per-size summary, the printed tables, the targets, the JSON."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from typing import Any

from bench.console import say
from bench.failover import percentile
from bench.results import environment, write_results
from bench.tables import millis, number, table

MIB = 1024 * 1024
# The targets, as shares of one core and seconds.
GATEWAY_UPKEEP = 0.10
AGENT_UPKEEP = 0.01
NEW_GATEWAY_FULL = 2.0


def upkeep(run: Mapping[str, Any], label: str) -> float:
    """CPU share spent on the view: the quiet window's minus the empty fleet's."""
    return float(run["busy"]["cpu"][label] - run["idle"]["cpu"][label])


def per_message(run: Mapping[str, Any], label: str) -> float:
    """Microseconds of upkeep CPU per message received over the empty fleet's (NaN when
    the connection was not the same one through a window: its counts are lost)."""
    busy, idle = run["busy"]["traffic"][label], run["idle"]["traffic"][label]
    if busy is None or idle is None:
        return math.nan
    extra = busy["received_msgs"] - idle["received_msgs"]
    return upkeep(run, label) / extra * 1e6 if extra > 0 else math.nan


def received(run: Mapping[str, Any], label: str, field: str) -> float:
    rates = run["busy"]["traffic"][label]
    return math.nan if rates is None else float(rates[field])


def worst(values: Iterable[float]) -> float:
    """The largest of the figures there are (NaN: none)."""
    present = [v for v in values if not math.isnan(v)]
    return max(present) if present else math.nan


def mean(values: Iterable[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def latest(times: Iterable[float]) -> float:
    """The last of the observers' times; NaN if any never got there (or none was asked)."""
    values = list(times)
    return math.nan if not values or any(math.isnan(t) for t in values) else max(values)


def summarise(run: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one size, from the raw phases."""
    agents = sorted(label for label in run["busy"]["traffic"] if label.startswith("agent-"))
    latencies = run["load"]["latencies_s"]
    out = run["out_of_view_s"]
    return {
        "instances": run["instances"],
        "load_average": run["busy"]["load_average"],
        "gateway_upkeep_core": upkeep(run, "gw0"),
        "agent_upkeep_core_max": worst(upkeep(run, a) for a in agents),
        # CPU per message received: how the cost grows with the fleet, as long as the
        # observer keeps up (one that falls behind gets CPU for fewer than it is sent).
        "gateway_us_per_message": per_message(run, "gw0"),
        "agent_us_per_message_max": worst(per_message(run, a) for a in agents),
        "gateway_rss_mib": [run["idle"]["rss"]["gw0"] / MIB, run["busy"]["rss"]["gw0"] / MIB],
        "fleet_sent_msgs": run["busy"]["fleet_sent_msgs"],
        "gateway_received_msgs": received(run, "gw0", "received_msgs"),
        "gateway_received_bytes": received(run, "gw0", "received_bytes"),
        "agent_received_msgs_mean": mean(received(run, a, "received_msgs") for a in agents),
        "agent_received_bytes_mean": mean(received(run, a, "received_bytes") for a in agents),
        "views_held": run["views_held"],
        "first_gateway_full_view_s": run["first_gateway"]["full_s"],
        "new_gateway_connected_s": run["second_gateway"]["connected_s"],
        "new_gateway_admin_s": run["second_gateway"]["admin_s"],
        "new_gateway_full_view_s": run["second_gateway"]["full_s"],
        # What the mesh costs, the process's start (Python imports) left out.
        "new_gateway_fill_s": run["second_gateway"]["full_s"]
        - run["second_gateway"]["connected_s"],
        "new_gateway_held": run["second_gateway"]["held"],
        "new_gateway_fill_cpu_s": run["second_gateway"].get("fill_cpu_s", math.nan),
        "killed": run["killed"],
        "out_of_every_view_s": latest(out.values()),
        "out_of_gateway_view_s": out.get("gw0", math.nan),
        "requests": len(latencies) + len(run["load"]["errors"]),
        "errors": len(run["load"]["errors"]),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def _percent(share: float) -> str:
    return "-" if math.isnan(share) else f"{share * 100:.1f}"


def _seconds(value: float) -> str:
    return "never" if math.isnan(value) else f"{value:.2f}"


def tables(summaries: list[dict[str, Any]]) -> str:
    cost = [
        [
            number(s["instances"]),
            f"{s['load_average']:.1f}",
            number(s["fleet_sent_msgs"]),
            _percent(s["gateway_upkeep_core"]),
            _percent(s["agent_upkeep_core_max"]),
            number(s["gateway_us_per_message"]),
            number(s["agent_us_per_message_max"]),
            f"{s['gateway_rss_mib'][0]:.0f} -> {s['gateway_rss_mib'][1]:.0f}",
            number(s["gateway_received_msgs"]),
            number(s["gateway_received_bytes"] / 1024),
            number(s["agent_received_msgs_mean"]),
            number(s["agent_received_bytes_mean"] / 1024),
            "-" if s["views_held"].get("gw0") is None else number(s["views_held"]["gw0"]),
        ]
        for s in summaries
    ]
    timing = [
        [
            number(s["instances"]),
            _seconds(s["first_gateway_full_view_s"]),
            _seconds(s["new_gateway_connected_s"]),
            _seconds(s["new_gateway_full_view_s"]),
            _seconds(s["new_gateway_fill_s"]),
            _seconds(s["new_gateway_fill_cpu_s"]),
            f"{s['killed']}: {_seconds(s['out_of_gateway_view_s'])} / "
            f"{_seconds(s['out_of_every_view_s'])}",
            millis(s["p50_ms"]),
            millis(s["p99_ms"]),
            f"{s['errors']}/{s['requests']}",
        ]
        for s in summaries
    ]
    return "\n\n".join(
        [
            table(
                [
                    "instances",
                    "load avg",
                    "fleet msgs/s",
                    "gw upkeep %core",
                    "agent upkeep %core",
                    "gw us/msg",
                    "agent us/msg",
                    "gw RSS MiB",
                    "gw msgs/s",
                    "gw KiB/s",
                    "agent msgs/s",
                    "agent KiB/s",
                    "gw holds",
                ],
                cost,
            ),
            table(
                [
                    "instances",
                    "1st gw full s",
                    "new gw on NATS s",
                    "new gw full s",
                    "new gw fill s",
                    "its CPU s",
                    "killed: out of gw / every view s",
                    "p50 ms",
                    "p99 ms",
                    "gw errors",
                ],
                timing,
            ),
        ]
    )


def verdicts(summary: Mapping[str, Any]) -> list[str]:
    """The issue's targets against one size's figures."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    gateway = summary["gateway_upkeep_core"]
    agent = summary["agent_upkeep_core_max"]
    new = summary["new_gateway_fill_s"]
    return [
        f"gateway upkeep < {GATEWAY_UPKEEP:.0%} of a core: {verdict(gateway < GATEWAY_UPKEEP)}",
        f"agent upkeep < {AGENT_UPKEEP:.0%} of a core: {verdict(agent < AGENT_UPKEEP)}",
        f"new gateway full view < {NEW_GATEWAY_FULL:g} s from its NATS connection: "
        f"{verdict(new < NEW_GATEWAY_FULL)}",
    ]


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    summaries = [summarise(run) for run in runs]
    print()
    print(tables(summaries))
    for summary in summaries:
        print(f"\n{summary['instances']:,} instances:")
        for line in verdicts(summary):
            print(f"  {line}")
    for run in runs:  # the raw latencies are summarised; the JSON keeps the figures
        run["load"].pop("latencies_s")
    path = write_results(
        "scale",
        {
            "environment": environment({}),
            "settings": vars(args),
            "summary": summaries,
            "runs": runs,
        },
    )
    say(f"results written to {path}")
