"""How one caller balances over one service: the algorithm and its knobs (DESIGN §10 defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mesh.balance.keys import HashSource

Algorithm = Literal[
    "random", "round_robin", "least_request", "least_response_time", "consistent_hash"
]


@dataclass(frozen=True, slots=True)
class BalanceConfig:
    algorithm: Algorithm = "least_request"
    hash_on: HashSource = field(default_factory=HashSource)  # consistent_hash only
    zone: str = ""  # the caller's zone; "" turns zone preference off
    # Two, not one: a retry must find another instance in the zone to go to.
    min_local: int = 2
    slow_start_window: float = 0.0  # seconds; 0 turns slow start off
    slow_start_aggression: float = 1.0
    panic_threshold: float = 0.5  # below this healthy share, balance over every instance
    ewma_decay: float = 10.0  # seconds
    default_rtt: float = 0.030  # seconds
