"""mesh.forwarding.routing and policy_routes: one host rule, default routes, policy routes."""

from __future__ import annotations

import random

import pytest
from factories import RequestHead

from mesh.errors import BadRequest, NoRoute, RateLimited
from mesh.forwarding.policy_routes import PolicyRouter, guarded
from mesh.forwarding.routing import DefaultRoutes, Routed, hostname, no_route
from mesh.forwarding.routing import RequestHead as Head
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route


def _head(target: bytes, host: bytes = b"", **more: object) -> Head:
    return RequestHead(target, host, **more)  # type: ignore[arg-type]


KNOWN = DefaultRoutes({"hello", "orders"}.__contains__)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        (b"hello", b"hello"),
        (b"Hello", b"hello"),
        (b"hello:8000", b"hello"),
        (b"hello.", b"hello"),
        (b"HELLO.:8000", b"hello"),
        (b"api.example.com.", b"api.example.com"),
        (b"[::1]:8000", b"[::1]"),
        (b"[::1]", b"[::1]"),
        (b"", b""),
    ],
)
def test_one_host_rule(authority: bytes, expected: bytes) -> None:
    assert hostname(authority) == expected


@pytest.mark.parametrize(
    ("target", "host", "expected"),
    [
        (b"/x?y=1", b"hello", Routed("hello", b"/x?y=1", "host")),
        (b"/x", b"Hello.:8000", Routed("hello", b"/x", "host")),  # the rule of policy routes
        (b"/hello/x?y=1", b"gw.example.com", Routed("hello", b"/x?y=1", "path")),
        (b"/hello?y=1", b"", Routed("hello", b"/?y=1", "path")),
        (b"/hello", b"", Routed("hello", b"/", "path")),
        (b"http://orders/list?page=2", b"", Routed("orders", b"/list?page=2", "absolute")),
        (b"http://Orders.:80", b"", Routed("orders", b"/", "absolute")),
        (b"http://orders?page=2", b"", Routed("orders", b"/?page=2", "absolute")),
    ],
)
def test_default_routes(target: bytes, host: bytes, expected: Routed) -> None:
    assert KNOWN(_head(target, host), 0.0) == expected


@pytest.mark.parametrize(
    ("target", "host"),
    [(b"/nosuch/x", b"other"), (b"http://nosuch/", b""), (b"*", b""), (b"/", b"")],
)
def test_default_routes_name_no_unknown_service(target: bytes, host: bytes) -> None:
    with pytest.raises(NoRoute):
        KNOWN(_head(target, host), 0.0)


@pytest.mark.parametrize(
    ("target", "host", "unknown"),
    [
        (b"/nosuch/x", b"other:8080", ("other", "nosuch")),  # Host first, as routes try them
        (b"http://nosuch/", b"", ("nosuch",)),
        (b"/", b"", ()),
        (b"/x", b"", ("x",)),
    ],
)
def test_default_routes_say_which_names_a_request_may_have_meant(
    target: bytes, host: bytes, unknown: tuple[str, ...]
) -> None:
    """A node that follows services on their first call follows these names, then
    routes the request again."""
    with pytest.raises(NoRoute) as refused:
        KNOWN(_head(target, host), 0.0)
    assert refused.value.unknown == unknown


def test_no_route_is_a_404_whatever_the_request() -> None:
    with pytest.raises(NoRoute):
        no_route(_head(b"/hello/"), 0.0)


def _table(*documents: dict[str, object]) -> RouteTable:
    routes = []
    for raw in documents:
        route = parse({"kind": "Route", **raw}, None)
        assert isinstance(route, Route), route
        routes.append(route)
    return RouteTable(routes)


def _router(*documents: dict[str, object], fallback: bool = True) -> PolicyRouter:
    return PolicyRouter(_table(*documents), KNOWN if fallback else None, random.Random(1))


GREET = {"name": "greet", "match": {"hosts": ["greet.example.com"]}, "to": [{"service": "hello"}]}


@pytest.mark.parametrize(
    "host", [b"greet.example.com", b"GREET.example.com.", b"greet.example.com.:8443"]
)
def test_policy_routes_take_the_same_host_rule(host: bytes) -> None:
    assert _router(GREET)(_head(b"/a", host), 0.0).route == "greet"


def test_policy_routes_read_the_authority_of_a_proxy_request() -> None:
    routed = _router(GREET)(_head(b"http://greet.example.com./a?b=1"), 0.0)
    assert (routed.service, routed.target, routed.route) == ("hello", b"/a?b=1", "greet")


def test_unmatched_requests_fall_back_to_the_default_routes_or_nowhere() -> None:
    assert _router(GREET)(_head(b"/orders/x"), 0.0) == Routed("orders", b"/x", "path")
    with pytest.raises(NoRoute):
        _router(GREET, fallback=False)(_head(b"/orders/x"), 0.0)


def test_a_request_no_route_matches_still_names_what_it_may_have_meant() -> None:
    # The names a first call follows: lost here, an agent with any Route policy in the
    # bucket never followed a service it had not called yet.
    with pytest.raises(NoRoute) as refused:
        _router(GREET)(_head(b"http://nosuch/x"), 0.0)
    assert refused.value.unknown == ("nosuch",)


KEYED = {
    "name": "keyed",
    "match": {"hosts": ["api.example.com"]},
    "auth": {"type": "api_key", "keys": [{"consumer": "alice", "sha256": "0" * 64}]},
    "to": [{"service": "hello"}],
}


def test_the_services_an_auth_route_guards_are_those_it_sends_to() -> None:
    assert guarded(_table(KEYED, GREET)) == {"hello"}
    assert guarded(_table(GREET)) == frozenset()


@pytest.mark.parametrize(
    ("target", "host"),
    [(b"/hello/hi", b"gw.example.com"), (b"/hi", b"hello"), (b"http://hello/hi", b"")],
)
def test_default_routes_hiding_a_service_answer_as_if_it_were_not_there(
    target: bytes, host: bytes
) -> None:
    hiding = KNOWN.hiding(frozenset({"hello"}))
    with pytest.raises(NoRoute) as hidden:
        hiding(_head(target, host), 0.0)
    with pytest.raises(NoRoute) as unknown:
        KNOWN(_head(target.replace(b"hello", b"nosuch"), host.replace(b"hello", b"nosuch")), 0.0)
    # The same answer as a name nobody has: the client learns nothing of the guarded one.
    assert str(hidden.value) == str(unknown.value).replace("nosuch", "hello")
    assert hiding(_head(b"/orders/x"), 0.0) == Routed("orders", b"/x", "path")
    assert KNOWN.hiding(frozenset()) is KNOWN


@pytest.mark.parametrize("path", [b"/a/./b", b"/a/../b", b"/a/.", b"/a/.."])
def test_dot_segments_are_refused_before_matching(path: bytes) -> None:
    with pytest.raises(BadRequest):
        _router(GREET)(_head(path, b"greet.example.com"), 0.0)


def test_rate_limits_count_per_key_on_the_time_they_are_given() -> None:
    limited = {
        **GREET,
        "rate_limit": {"requests_per_second": 1, "burst": 2, "key": "header:x-user"},
    }
    router = _router(limited)

    def call(user: bytes, now: float) -> None:
        router(_head(b"/", b"greet.example.com", headers=[(b"X-User", user)]), now)

    call(b"a", 100.0)
    call(b"a", 100.0)
    with pytest.raises(RateLimited) as refused:
        call(b"a", 100.0)
    assert refused.value.retry_after == pytest.approx(1.0)
    call(b"b", 100.0)  # another key has its own bucket
    call(b"a", 101.0)  # one second later, one more token
