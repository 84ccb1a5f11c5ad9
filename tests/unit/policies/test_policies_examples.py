"""policies/examples: every example loads and validates cleanly, alone and together."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from factories import RequestHead, service_defaults

import policies
from mesh.forwarding.policy_routes import PolicyRouter, guarded
from mesh.policy.match import RouteTable, choose
from mesh.policy.model import Route, Service, key
from policies.loader import Loaded, load

EXAMPLES = Path(policies.__file__).parent / "examples"
DEFAULTS = service_defaults()


def documents(loaded: Loaded) -> dict[str, Route | Service]:
    assert loaded.ok, [str(p) for p in loaded.errors]
    assert loaded.warnings == (), [str(p) for p in loaded.warnings]
    return {key(item.document): item.document for item in loaded.documents}


@pytest.mark.parametrize("name", ["hello.yaml", "canary.yaml", "resilient.yaml", "edge-auth.yaml"])
def test_each_example_is_valid_on_its_own(name: str) -> None:
    loaded = load(EXAMPLES / name, defaults=DEFAULTS)
    assert loaded.ok, [str(p) for p in loaded.errors]
    # A route may send to `hello`, whose Service document is resilient.yaml's.
    assert {p.message for p in loaded.warnings} <= {
        "no Service document has this name: defaults apply (a typo?)"
    }


def test_all_examples_are_clean_together_and_route_only_to_the_demos_services() -> None:
    found = documents(load(EXAMPLES, defaults=DEFAULTS))
    assert sorted(found) == [
        "route.api",
        "route.api-v2",
        "route.canary",
        "route.demo-path",
        "route.hello",
        "service.frontend",
        "service.hello",
    ]
    demo = {"hello", "frontend"}  # what `mesh up` runs
    assert {d.name for d in found.values() if isinstance(d, Service)} <= demo
    for route in (d for d in found.values() if isinstance(d, Route)):
        assert {destination.service for destination in route.to} <= demo


def test_hello_is_the_classic() -> None:
    found = documents(load(EXAMPLES, defaults=DEFAULTS))
    service = found["service.frontend"]
    assert isinstance(service, Service)
    assert (service.timeouts.connect, service.timeouts.request) == (1.0, 5.0)
    route = found["route.hello"]
    assert isinstance(route, Route)
    table = RouteTable([route])
    matched = table.match(b"GET", b"hello.example.com", b"/hello/world?x=1", [])
    assert matched is not None
    assert (matched.route.name, matched.target) == ("hello", b"/hello/world?x=1")
    assert table.match(b"GET", b"other.example.com", b"/hello", []) is None
    assert table.match(b"GET", b"hello", b"/x", []) is not None  # `Host: hello`


def test_hello_has_an_open_path_though_edge_auth_guards_it() -> None:
    found = documents(load(EXAMPLES, defaults=DEFAULTS))
    routes = [d for d in found.values() if isinstance(d, Route)]
    table = RouteTable(routes)
    assert "hello" in guarded(table)  # the gateway's default routes do not reach it
    for target, expected in [(b"/hello/", b"/"), (b"/hello", b"/"), (b"/hello/x?y=1", b"/x?y=1")]:
        matched = table.match(b"GET", b"127.0.0.1", target, [])
        assert matched is not None
        assert (matched.route.name, matched.target) == ("demo-path", expected)


def test_canary_splits_90_10_by_version_under_canary() -> None:
    route = documents(load(EXAMPLES, defaults=DEFAULTS))["route.canary"]
    assert isinstance(route, Route)
    rng = random.Random(3)
    picks = Counter(choose(route, rng).subset["version"] for _ in range(2000))
    assert abs(picks["v2"] / 2000 - 0.10) < 0.03
    matched = RouteTable([route]).match(b"GET", b"127.0.0.1:8000", b"/canary/x?y=1", [])
    assert matched is not None
    assert matched.target == b"/x?y=1"


def test_resilient_retries_5xx_and_ejects() -> None:
    found = documents(load(EXAMPLES, defaults=DEFAULTS))
    service = found["service.hello"]
    assert isinstance(service, Service)
    assert service.retries.attempts == 3
    assert "5xx" in service.retries.on  # what the banner's 500 experiment needs
    assert service.timeouts.per_try == 2.0
    assert service.outlier.max_ejection == 300.0


def test_edge_auth_takes_the_demo_keys_and_limits_each_consumer() -> None:
    found = documents(load(EXAMPLES, defaults=DEFAULTS))
    route = found["route.api"]
    assert isinstance(route, Route)
    assert route.rate_limit is not None
    assert (route.rate_limit.burst, route.rate_limit.key) == (5, "consumer")
    matched = RouteTable([route]).match(b"POST", b"eu.api.example.com", b"/v1/c?id=7", [])
    assert matched is not None
    assert matched.target == b"/c?id=7"
    router = PolicyRouter(RouteTable([route]), None, random.Random(1))
    for api_key, consumer in [(b"demo", b"demo"), (b"demo-partner", b"partner")]:
        head = RequestHead(b"/v1/c", b"api.example.com", headers=[(b"x-api-key", api_key)])
        assert router(head, 0.0).consumer == consumer
    assert isinstance(found["route.api-v2"], Route)
