"""Failure-detection timing: named presets and the expiry formulas, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Preset = Literal["lan", "wan", "local"]

# Bounds on the interval a sender may advertise: below, heartbeats would flood every
# observer; above, a dead instance would linger for minutes.
MIN_INTERVAL = 0.05
MAX_INTERVAL = 60.0


@dataclass(frozen=True)
class Timing:
    """Silence is measured in the sender's own intervals, so mixed presets agree."""

    interval: float  # our own heartbeat interval, seconds
    suspect_intervals: int  # silent intervals before suspect (no longer routed)
    down_intervals: int  # silent intervals before down (removed, event published)
    forget_after: float  # seconds a down or departed member is kept as a tombstone
    # Seconds from an instance's start within which a node that first sees it publishes
    # its arrival: processes started together take seconds to be listening, not intervals.
    arrival_grace: float = 30.0


# Named presets, as memberlist's Default{LAN,WAN,Local}Config: a faster interval finds
# failures sooner but costs one message per node per interval on every observer.
PRESETS: dict[Preset, Timing] = {
    "lan": Timing(1.0, 3, 6, 60.0),  # a silent instance is down after 6 s, as memberlist's LAN
    "wan": Timing(5.0, 3, 6, 300.0),  # links with seconds of jitter: down after 30 s
    "local": Timing(0.2, 3, 6, 30.0),  # one machine (tests, demos): down after 1.2 s
}


def clamp_interval(interval: float) -> float:
    return min(max(interval, MIN_INTERVAL), MAX_INTERVAL)


def suspect_at(heard: float, interval: float, timing: Timing) -> float:
    """When a member last heard at `heard`, beating every `interval`, becomes suspect."""
    return heard + clamp_interval(interval) * timing.suspect_intervals


def down_at(heard: float, interval: float, timing: Timing) -> float:
    """When that member is declared down."""
    return heard + clamp_interval(interval) * timing.down_intervals


def forget_at(since: float, timing: Timing) -> float:
    """When a down or departed member, in that state since `since`, is forgotten."""
    return since + timing.forget_after
