"""policies/examples: every example loads and validates cleanly, alone and together."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from factories import service_defaults

import policies
from mesh.policy.match import RouteTable, choose
from mesh.policy.model import Route, Service, key
from policies.loader import Loaded, load

EXAMPLES = Path(policies.__file__).parent / "examples"
DEFAULTS = service_defaults()


def documents(loaded: Loaded) -> dict[str, Route | Service]:
    assert loaded.ok, [str(p) for p in loaded.errors]
    assert loaded.warnings == (), [str(p) for p in loaded.warnings]
    return {key(item.document): item.document for item in loaded.documents}


@pytest.mark.parametrize("name", ["hello.yaml", "canary.yaml", "resilient.yaml"])
def test_each_example_is_clean_on_its_own(name: str) -> None:
    assert documents(load(EXAMPLES / name, defaults=DEFAULTS))


def test_all_examples_are_clean_together() -> None:
    assert sorted(documents(load(EXAMPLES, defaults=DEFAULTS))) == [
        "route.hello",
        "route.payments",
        "route.reviews",
        "service.checkout",
        "service.hello-service",
        "service.payments",
        "service.reviews",
    ]


def test_hello_is_the_classic() -> None:
    found = documents(load(EXAMPLES / "hello.yaml", defaults=DEFAULTS))
    service = found["service.hello-service"]
    assert isinstance(service, Service)
    assert (service.timeouts.connect, service.timeouts.request) == (1.0, 5.0)
    route = found["route.hello"]
    assert isinstance(route, Route)
    table = RouteTable([route])
    matched = table.match(b"GET", b"hello.example.com", b"/hello/world?x=1", [])
    assert matched is not None
    assert (matched.route.name, matched.target) == ("hello", b"/hello/world?x=1")
    assert table.match(b"GET", b"other.example.com", b"/hello", []) is None


def test_canary_splits_90_10_by_version() -> None:
    route = documents(load(EXAMPLES / "canary.yaml", defaults=DEFAULTS))["route.reviews"]
    assert isinstance(route, Route)
    rng = random.Random(3)
    picks = Counter(choose(route, rng).subset["version"] for _ in range(2000))
    assert abs(picks["v2"] / 2000 - 0.10) < 0.03


def test_resilient_retries_ejects_and_rewrites() -> None:
    found = documents(load(EXAMPLES / "resilient.yaml", defaults=DEFAULTS))
    service = found["service.payments"]
    assert isinstance(service, Service)
    assert service.retries.attempts == 3
    assert service.timeouts.per_try == 2.0
    assert service.outlier.max_ejection == 300.0
    route = found["route.payments"]
    assert isinstance(route, Route)
    matched = RouteTable([route]).match(
        b"POST", b"eu.payments.example.com", b"/payments/c?id=7", []
    )
    assert matched is not None
    assert matched.target == b"/v1/c?id=7"
