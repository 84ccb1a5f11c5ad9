"""Where a policy's confirmation time goes: what the system costs, what co-location adds.

One node's answer to one apply, from the write to the benchmark's collector handling it:

    total  = store + fanout + queued + work_wall + ack + collect
    system = store + fanout + work_cpu + ack         (one agent per host would see this)

- store: the write until the NATS server stored the revision;
- fanout: stored until the revision was on this node's socket;
- queued: waiting behind the other nodes of the same process, before the handler ran and
  before the acknowledgement was written to the socket (co-location's cost);
- work_wall / work_cpu: decode, compile, swap, queue the ack; the CPU seconds are the
  node's own work, the wall time adds the other processes sharing the two cores;
- ack: the acknowledgement from this node's socket onto the collector's socket;
- collect: the collector's own wait, from its socket to its handler (one process hearing
  a thousand answers; not the system's, and not co-location's either).

Arrivals on a socket are the earliest sighting of the message there (bench/arrivals.py,
bench/marks.py). A step nobody saw counts as the system's, so the split never flatters
it. A node with no stamps (a gateway, a process of its own) is all system but `collect`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.tables import percentile

PARTS = ("store", "fanout", "queued", "work_wall", "work_cpu", "ack", "collect", "total", "system")


def find_stamp(
    stamps: Sequence[Mapping[str, Any]], key: str, revision: int
) -> Mapping[str, Any] | None:
    return next((s for s in stamps if s["key"] == key and s["revision"] == revision), None)


def split(
    written: float, received: float, heard: float | None, stamp: Mapping[str, Any] | None
) -> dict[str, float]:
    """One node's answer in milliseconds (wall seconds in: one machine, one clock).

    `heard`: the answer on the collector's socket; `stamp`: the node's own (find_stamp's,
    with `arrived` and `written` filled in, either None where not seen)."""
    total = received - written
    heard = received if heard is None else heard
    collect = received - heard
    if stamp is None:
        return {
            "collect": collect * 1000,
            "total": total * 1000,
            "system": (heard - written) * 1000,
        }
    started, swapped = stamp["started"], stamp["swapped"]
    arrived = started if stamp["arrived"] is None else stamp["arrived"]
    sent = swapped if stamp["written"] is None else stamp["written"]
    parts = {
        "store": stamp["stored"] - written,
        "fanout": arrived - stamp["stored"],
        "queued": (started - arrived) + (sent - swapped),
        "work_wall": swapped - started,
        "work_cpu": stamp["cpu"],
        "ack": heard - sent,
        "collect": collect,
        "total": total,
    }
    parts["system"] = parts["store"] + parts["fanout"] + parts["work_cpu"] + parts["ack"]
    return {name: seconds * 1000 for name, seconds in parts.items()}


def per_apply(answers: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The last acknowledgement as measured, as heard on the collector's socket, and as one
    agent per host would see it: last = system + co-location + the collector's wait."""

    def on_socket(node: str) -> float:
        return answers[node]["total"] - answers[node]["collect"]

    last = max(answers, key=lambda node: answers[node]["total"])
    heard = max(answers, key=on_socket)
    system = max(answers, key=lambda node: answers[node]["system"])
    return {
        "last_ms": answers[last]["total"],
        "last_node": last,
        "system_last_ms": answers[system]["system"],
        "system_last_node": system,
        "colocation_ms": on_socket(heard) - answers[system]["system"],
        "collect_ms": answers[last]["total"] - on_socket(heard),
    }


def spread(values: Iterable[float]) -> dict[str, float]:
    present = list(values)
    return {
        "p50": percentile(present, 0.5),
        "p99": percentile(present, 0.99),
        "max": max(present, default=float("nan")),
    }


def summary(answers: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """Per apply (the last ack) and per node answer (each part), p50/p99/max."""
    applies = [per_apply(a) for a in answers]
    every = [parts for a in answers for parts in a.values()]
    return {
        "last": spread(a["last_ms"] for a in applies),
        "system_last": spread(a["system_last_ms"] for a in applies),
        "colocation": spread(a["colocation_ms"] for a in applies),
        "collect": spread(a["collect_ms"] for a in applies),
        "parts": {name: spread(p[name] for p in every if name in p) for name in PARTS},
        "applies": applies,
    }
