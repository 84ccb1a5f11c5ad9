"""mesh.balance.endpoint: what a balancer knows of an instance, and exclusion for retries."""

from __future__ import annotations

import pytest
from balance_factories import endpoints

from mesh.balance.endpoint import Endpoint, allowed


def test_since_defaults_to_long_ago() -> None:
    assert Endpoint("orders", "a", "h", 1, 1, "", {}).since == 0.0


@pytest.mark.parametrize(
    ("exclude", "expected"),
    [
        (set(), [0, 1, 2]),
        ({"i1"}, [0, 2]),
        ({"i0", "i2", "elsewhere"}, [1]),
        ({"i0", "i1", "i2"}, [0, 1, 2]),  # every one tried: all are allowed again
    ],
)
def test_allowed(exclude: set[str], expected: list[int]) -> None:
    assert allowed(endpoints(1, 1, 1), exclude) == expected
