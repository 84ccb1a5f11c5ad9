"""mesh.policy.match: hosts, paths, methods and headers; precedence; rewrites; weighted splits."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from mesh.forwarding.routing import hostname
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable, choose
from mesh.policy.route import Route

Headers = list[tuple[bytes, bytes]]


def route(name: str, **match: Any) -> Route:
    rewrite = match.pop("rewrite", None)
    obj: dict[str, Any] = {"kind": "Route", "name": name, "match": match, "to": [{"service": name}]}
    if rewrite is not None:
        obj["rewrite"] = rewrite
    document = parse(obj, None)
    assert isinstance(document, Route), document
    return document


def winner(
    table: RouteTable,
    target: bytes,
    host: bytes = b"x.test",
    method: bytes = b"GET",
    headers: Headers | None = None,
) -> str | None:
    matched = table.match(method, hostname(host), target, headers or [])
    return None if matched is None else matched.route.name


HOSTS = RouteTable(
    [
        route("exact", hosts=["api.example.com"]),
        route("wild", hosts=["*.example.com"]),
        route("deep", hosts=["*.eu.example.com"]),
        route("ip", hosts=["10.0.0.1"]),
        route("fallback"),
    ]
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"api.example.com", "exact"),
        (b"API.Example.COM", "exact"),
        (b"api.example.com:8443", "exact"),
        (b"api.example.com.", "exact"),
        (b"web.example.com", "wild"),
        (b"a.b.example.com", "wild"),
        (b"x.eu.example.com", "deep"),
        (b"eu.example.com", "wild"),
        (b"example.com", "fallback"),
        (b".example.com", "fallback"),
        (b"example.com.evil.test", "fallback"),
        (b"10.0.0.1:80", "ip"),
        (b"[::1]:8000", "fallback"),
        (b"", "fallback"),
    ],
)
def test_hosts_exact_then_longest_wildcard_then_any(host: bytes, expected: str) -> None:
    assert winner(HOSTS, b"/", host=host) == expected


PATHS = RouteTable(
    [
        route("root", path_prefix="/"),
        route("api", path_prefix="/api"),
        route("api-v1", path_prefix="/api/v1/"),
        route("health", path_exact="/api/health"),
        route("json", path_regex=r"/api/.*\.json"),
        route("users", path_regex=r"/users/[0-9]+"),
    ]
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/", "root"),
        (b"/anything", "root"),
        (b"/api", "api"),
        (b"/api/", "api"),
        (b"/api/x", "api"),
        (b"/apix", "root"),
        (b"/api/v1", "api-v1"),
        (b"/api/v1/orders?limit=5", "api-v1"),
        (b"/api/v10", "api"),
        (b"/api/health", "health"),
        (b"/api/health?verbose=1", "health"),
        (b"/api/health/", "api"),
        (b"/api/data.json", "api"),
        (b"/users/42", "users"),
        (b"/users/42/", "root"),
        (b"/users/42?x=/users/1", "users"),
        (b"*", None),
        (b"http://x.test/api", None),
    ],
)
def test_paths_exact_then_longest_prefix_then_regex(target: bytes, expected: str | None) -> None:
    assert winner(PATHS, target) == expected


def test_regex_routes_beat_routes_without_a_path_condition() -> None:
    table = RouteTable([route("any"), route("json", path_regex=r".*\.json")])
    assert winner(table, b"/a/b.json") == "json"
    assert winner(table, b"/a/b.xml") == "any"
    assert winner(table, b"*") == "any"


CONDITIONS = RouteTable(
    [
        route("read", path_prefix="/api", methods=["GET", "HEAD"]),
        route("write", path_prefix="/api", methods=["POST"]),
        route("beta", path_prefix="/api", headers=[{"name": "X-Beta", "exact": "1"}]),
        route("tenant", path_prefix="/api", headers=[{"name": "x-tenant", "regex": "t-[0-9]+"}]),
        route("keyless", path_prefix="/api", headers=[{"name": "x-api-key", "present": False}]),
        route(
            "admin",
            path_prefix="/api",
            methods=["DELETE"],
            headers=[{"name": "x-admin", "present": True}],
        ),
    ]
)


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        (b"DELETE", [(b"X-Admin", b"")], "admin"),
        (b"GET", [(b"x-api-key", b"k")], "read"),
        (b"HEAD", [(b"x-api-key", b"k")], "read"),
        (b"POST", [(b"x-api-key", b"k")], "write"),
        (b"PUT", [(b"x-api-key", b"k"), (b"x-beta", b"1")], "beta"),
        (b"PUT", [(b"x-api-key", b"k"), (b"x-beta", b"2")], None),
        (b"PUT", [(b"x-api-key", b"k"), (b"X-Tenant", b"t-42")], "tenant"),
        (b"PUT", [(b"x-api-key", b"k"), (b"x-tenant", b"t-42x")], None),
        (b"PUT", [(b"x-api-key", b"k"), (b"x-tenant", b"no"), (b"x-tenant", b"t-1")], "tenant"),
        (b"PUT", [], "keyless"),
        (b"DELETE", [], "keyless"),
        (b"get", [(b"x-api-key", b"k")], None),
    ],
)
def test_methods_and_headers_more_conditions_first(
    method: bytes, headers: Headers, expected: str | None
) -> None:
    assert winner(CONDITIONS, b"/api/x", method=method, headers=headers) == expected


def test_equal_routes_go_by_name_whatever_the_input_order() -> None:
    routes = [route("b", path_prefix="/x"), route("a", path_prefix="/x/")]
    assert winner(RouteTable(routes), b"/x/1") == "a"
    assert winner(RouteTable(reversed(routes)), b"/x/1") == "a"


def test_exact_host_routes_fall_through_to_wildcard_and_any_host() -> None:
    table = RouteTable(
        [
            route("api-v1", hosts=["api.example.com"], path_prefix="/v1"),
            route("wild-v2", hosts=["*.example.com"], path_prefix="/v2"),
            route("any-v3", path_prefix="/v3"),
            route("any-v1", path_exact="/v1/exact"),
        ]
    )
    host = b"api.example.com"
    assert winner(table, b"/v1/exact", host=host) == "api-v1"  # host beats path specificity
    assert winner(table, b"/v2/x", host=host) == "wild-v2"
    assert winner(table, b"/v3", host=host) == "any-v3"
    assert winner(table, b"/v4", host=host) is None


def test_empty_table_matches_nothing() -> None:
    assert RouteTable([]).match(b"GET", b"a", b"/", []) is None


@pytest.mark.parametrize(
    ("match", "target", "upstream"),
    [
        ({"path_prefix": "/hello"}, b"/hello/x?q=1", b"/hello/x?q=1"),
        ({"path_prefix": "/hello", "rewrite": {"strip_prefix": True}}, b"/hello/x?q=1", b"/x?q=1"),
        ({"path_prefix": "/hello", "rewrite": {"strip_prefix": True}}, b"/hello", b"/"),
        ({"path_prefix": "/hello", "rewrite": {"strip_prefix": True}}, b"/hello?q", b"/?q"),
        ({"path_prefix": "/hello/", "rewrite": {"strip_prefix": True}}, b"/hello/x", b"/x"),
        ({"path_prefix": "/", "rewrite": {"strip_prefix": True}}, b"/x/y", b"/x/y"),
        ({"path_prefix": "/a", "rewrite": {"replace_prefix": "/v2"}}, b"/a/x?q", b"/v2/x?q"),
        ({"path_prefix": "/a", "rewrite": {"replace_prefix": "/v2"}}, b"/a", b"/v2"),
        ({"path_prefix": "/a", "rewrite": {"replace_prefix": "/v2/"}}, b"/a/x", b"/v2/x"),
        ({"path_prefix": "/a", "rewrite": {"replace_prefix": "/v2/"}}, b"/a", b"/v2/"),
        ({"path_prefix": "/a", "rewrite": {"replace_prefix": "/"}}, b"/a/x", b"/x"),
        ({"path_prefix": "/", "rewrite": {"replace_prefix": "/v2"}}, b"/x", b"/v2/x"),
        ({"path_prefix": "/a", "rewrite": {"strip_prefix": "/a/b"}}, b"/a/b/c", b"/c"),
        ({"path_prefix": "/a", "rewrite": {"strip_prefix": "/a/b"}}, b"/a/bc", b"/a/bc"),
        ({"path_prefix": "/a", "rewrite": {"strip_prefix": "/a/b"}}, b"/a/x", b"/a/x"),
        ({"path_regex": "/v[0-9]/.*", "rewrite": {"strip_prefix": "/v1"}}, b"/v1/x?y", b"/x?y"),
        (
            {
                "path_regex": "/v[0-9]/.*",
                "rewrite": {"strip_prefix": "/v1", "replace_prefix": "/n"},
            },
            b"/v1/x",
            b"/n/x",
        ),
        ({"path_exact": "/old", "rewrite": {"host": "new.internal"}}, b"/old?x", b"/old?x"),
    ],
)
def test_rewrites_swap_the_prefix_and_keep_the_query(
    match: dict[str, Any], target: bytes, upstream: bytes
) -> None:
    matched = RouteTable([route("r", **match)]).match(b"GET", b"h", target, [])
    assert matched is not None
    assert matched.target == upstream


def test_weighted_split_90_10_within_3_points() -> None:
    document = parse(
        {
            "kind": "Route",
            "name": "canary",
            "to": [
                {"service": "reviews", "weight": 90, "subset": {"version": "v1"}},
                {"service": "reviews", "weight": 10, "subset": {"version": "v2"}},
            ],
        },
        None,
    )
    assert isinstance(document, Route)
    rng = random.Random(7)
    picks = Counter(choose(document, rng).subset["version"] for _ in range(2000))
    assert abs(picks["v2"] / 2000 - 0.10) < 0.03
    assert picks["v1"] + picks["v2"] == 2000


def test_zero_weight_destinations_are_never_chosen() -> None:
    document = parse(
        {
            "kind": "Route",
            "name": "dark",
            "to": [{"service": "a", "weight": 0}, {"service": "b"}, {"service": "c", "weight": 0}],
        },
        None,
    )
    assert isinstance(document, Route)
    rng = random.Random(1)
    assert {choose(document, rng).service for _ in range(200)} == {"b"}
    single = route("one")
    assert choose(single, rng).service == "one"
