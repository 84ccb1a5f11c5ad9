"""mesh.balance.subset: panic threshold and zone preference, as tables."""

from __future__ import annotations

import pytest
from balance_factories import endpoint

from mesh.balance.config import BalanceConfig
from mesh.balance.endpoint import Endpoint
from mesh.balance.subset import candidates, panic, prefer_zone


def named(count: int, zone: str = "", prefix: str = "i") -> list[Endpoint]:
    return [endpoint(f"{prefix}{zone}{k}", zone=zone) for k in range(count)]


@pytest.mark.parametrize(
    ("total", "healthy", "threshold", "panicking"),
    [
        (10, 10, 0.5, False),
        (10, 5, 0.5, False),  # exactly at the threshold: not below it
        (10, 4, 0.5, True),
        (10, 0, 0.5, True),
        (3, 1, 0.5, True),
        (2, 1, 0.5, False),
        (1, 1, 0.5, False),
        (10, 0, 0.0, False),  # threshold 0 turns panic off
        (10, 9, 1.0, True),  # threshold 1: any unhealthy instance
        (0, 0, 0.5, False),  # nothing at all: nothing to panic over
    ],
)
def test_panic(total: int, healthy: int, threshold: float, panicking: bool) -> None:
    everyone = named(total)
    chosen, on = panic(everyone, everyone[:healthy], threshold)
    assert on is panicking
    assert list(chosen) == (everyone if panicking else everyone[:healthy])


@pytest.mark.parametrize(
    ("local", "remote", "zone", "min_local", "only_local"),
    [
        (3, 3, "a", 2, True),
        (2, 3, "a", 2, True),
        (1, 3, "a", 2, False),  # too few at home: everyone
        (0, 3, "a", 1, False),
        (0, 3, "a", 0, False),  # never an empty set
        (3, 3, "", 2, False),  # no zone of our own: no preference
    ],
)
def test_prefer_zone(local: int, remote: int, zone: str, min_local: int, only_local: bool) -> None:
    home, away = named(local, "a"), named(remote, "b")
    chosen = list(prefer_zone([*away, *home], zone, min_local))
    assert chosen == (home if only_local else [*away, *home])


@pytest.mark.parametrize(
    ("healthy_home", "healthy_away", "expected", "panicking"),
    [
        (2, 2, "home", False),  # enough at home
        (1, 2, "healthy", False),  # too few at home: every healthy one
        (1, 0, "everyone", True),  # 1 of 4 healthy: panic, zones ignored
    ],
)
def test_candidates_decides_panic_before_zones(
    healthy_home: int, healthy_away: int, expected: str, panicking: bool
) -> None:
    home, away = named(2, "a"), named(2, "b")
    healthy = [*home[:healthy_home], *away[:healthy_away]]
    sets = {"home": home[:healthy_home], "healthy": healthy, "everyone": [*home, *away]}
    chosen, on = candidates(BalanceConfig(zone="a"), [*home, *away], healthy)
    assert (list(chosen), on) == (sets[expected], panicking)
