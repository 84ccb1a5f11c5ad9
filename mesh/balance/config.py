"""How one caller balances over one service: the algorithm names and every knob's default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mesh.balance.keys import HashSource

# The one list of algorithm names: settings, Service documents and make_balancer use it.
Algorithm = Literal[
    "random", "round_robin", "least_request", "least_response_time", "consistent_hash"
]


@dataclass(frozen=True, slots=True)
class BalanceConfig:
    """Every balancing knob and its default; MESH_* settings and Service documents start here."""

    # least_request (P2C on requests in flight) needs no tuning and steers away from a slow
    # instance within a few requests; least_response_time reacts to latency itself but
    # trusts a few samples; round_robin and random ignore load; consistent_hash keeps a
    # key on one instance (caches) at the price of uneven load.
    algorithm: Algorithm = "least_request"
    hash_on: HashSource = field(default_factory=HashSource)  # consistent_hash only
    zone: str = ""  # the caller's zone; "" turns zone preference off
    # Two, not one: a retry must find another instance in the zone to go to.
    min_local: int = 2
    # A ramp spares a cold instance (JIT, caches) the full load at once, but keeps a
    # healthy restarted one under-used for as long; 0 turns slow start off.
    slow_start_window: float = 0.0
    slow_start_aggression: float = 1.0  # 1 is linear; above 1 the ramp starts faster
    # Higher keeps load off the few healthy instances left (spreading it over all,
    # failing some requests); lower trusts health checks more and may crush the survivors.
    panic_threshold: float = 0.5
    # Seconds a fast response takes to pull least_response_time's estimate down: shorter
    # follows load sooner, longer is steadier against one lucky response.
    ewma_decay: float = 10.0
    # The estimate of an instance without samples: low sends new instances traffic at
    # once, high keeps them idle until others slow down.
    default_rtt: float = 0.030
