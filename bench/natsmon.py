"""What nats-server's monitoring port says: per connection, what it received and sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.loopback import http_get

Connz = dict[str, dict[str, Any]]  # connection name -> its /connz entry


def connz(port: int, *, subs: bool = False) -> Connz:
    """Every client connection by name (nameless ones by cid), from /connz."""
    path = "/connz?limit=10000" + ("&subs=1" if subs else "")
    status, body = http_get(port, path, timeout=5)
    if status != 200:
        raise OSError(f"nats-server monitoring answered {status} on {path}")
    return {c.get("name") or str(c["cid"]): c for c in json.loads(body)["connections"]}


@dataclass(frozen=True, slots=True)
class Traffic:
    """Per second over a window, as the observer sees it: `received` is what the server
    delivered to it (the server's out_*), `sent` what it published (in_*)."""

    received_msgs: float
    received_bytes: float
    sent_msgs: float
    sent_bytes: float


def traffic(before: Mapping[str, Any], after: Mapping[str, Any], seconds: float) -> Traffic:
    """Rates of one connection between two /connz readings `seconds` apart."""

    def rate(field: str) -> float:
        return float(after[field] - before[field]) / seconds

    return Traffic(rate("out_msgs"), rate("out_bytes"), rate("in_msgs"), rate("in_bytes"))


def traffic_of(before: Connz, after: Connz, prefix: str, seconds: float) -> Traffic | None:
    """The rates of the connection named `prefix`*, or None if it was not the same one
    all along (absent at either reading, or reconnected: its counters started again)."""
    try:
        first, last = named(before, prefix), named(after, prefix)
    except KeyError:
        return None
    return traffic(first, last, seconds) if first["cid"] == last["cid"] else None


def named(connections: Connz, prefix: str) -> dict[str, Any]:
    """The one connection whose name starts with `prefix` (a node's bus is named
    role:service:instance); KeyError if none, ValueError if several."""
    found = [c for name, c in connections.items() if name.startswith(prefix)]
    if not found:
        raise KeyError(f"no NATS connection named {prefix}*")
    if len(found) > 1:
        raise ValueError(f"{len(found)} NATS connections named {prefix}*")
    return found[0]
