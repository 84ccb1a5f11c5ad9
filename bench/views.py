"""What an observer's view holds, read from its /metrics (`mesh_members`), cheap to poll."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from bench.loopback import admin_get


def alive_members(metrics_text: str) -> dict[str, int]:
    """Alive (routable unless unhealthy or draining) members per service."""
    alive: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "mesh_members":
            continue
        for sample in family.samples:
            if sample.labels.get("state") == "alive":
                service = sample.labels["service"]
                alive[service] = alive.get(service, 0) + int(sample.value)
    return alive


def alive_at(admin_port: int, *, timeout: float = 5.0) -> dict[str, int]:
    _, body = admin_get(admin_port, "/metrics", timeout=timeout)
    return alive_members(body.decode())


def held(alive: Mapping[str, int], fleet: Mapping[str, int]) -> int:
    """How many of the fleet's records (count per service) the view holds alive."""
    return sum(min(alive.get(service, 0), count) for service, count in fleet.items())


def losses_seen(
    alive: Mapping[str, int], before: Mapping[str, int], lost: Mapping[str, int]
) -> bool:
    """True once the view shows every loss: each service that lost records holds at most
    what it held `before` the loss, minus its losses. Services the view did not hold
    (an observer that only follows what it calls) count as seen."""
    return all(
        alive.get(service, 0) <= max(0, before[service] - count)
        for service, count in lost.items()
        if before.get(service, 0) > 0
    )
