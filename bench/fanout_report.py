"""bench.fanout's figures: per way, the last node's arrival over rounds, and the ratios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.tables import median, millis, percentile, ratio, table


def figures(changes: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """One way's rounds in milliseconds: the last arrival's p50/p99/max over rounds, the
    median node's arrival (median over rounds), the server's CPU per change (the mean:
    /proc counts it in 10 ms ticks)."""
    last, middle = [], []
    for change in changes:
        after = sorted((at - change["written"]) * 1000 for at in change["arrivals"])
        last.append(after[-1])
        middle.append(after[len(after) // 2])
    return {
        "last_p50": median(last),
        "last_p99": percentile(last, 0.99),
        "last_max": max(last, default=float("nan")),
        "node_p50": median(middle),
        "server_cpu": 1000 * sum(c["server_cpu"] for c in changes) / max(1, len(changes)),
    }


def report(nodes: int, rounds: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Print the table; the figures per way for the JSON."""
    ways = {way: figures(changes) for way, changes in rounds.items()}
    core = ways["core"]["last_p50"]
    rows = [
        [
            way,
            millis(f["last_p50"]),
            millis(f["last_p99"]),
            millis(f["last_max"]),
            millis(f["node_p50"]),
            millis(f["server_cpu"]),
            f"{ratio(f['last_p50'], core):.1f}",
        ]
        for way, f in ways.items()
    ]
    count = len(next(iter(rounds.values())))
    print(f"\none change to {nodes} nodes, {count} rounds; ms from the publish's write")
    header = ["way", "last p50", "last p99", "last max", "node p50", "server CPU", "/ core"]
    print(table(header, rows))
    return {"nodes": nodes, "rounds": count, "ways": ways}
