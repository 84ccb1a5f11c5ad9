"""`mesh explain`'s builder: route verdicts, destinations, policies and instances, purely."""

from __future__ import annotations

import hashlib
import itertools
import random
from typing import Any

import msgspec
import pytest
from factories import RequestHead, feed, heartbeat, new_view

from mesh.engine import replies
from mesh.errors import NoRoute
from mesh.forwarding.directory import Directory
from mesh.forwarding.explanation import Explanation, Question
from mesh.forwarding.policy_routes import CONSIDERED_SHOWN, PolicyRouter
from mesh.forwarding.routing import DefaultRoutes, no_route
from mesh.membership.view import View
from mesh.observe.explain_answer import Vantage, explain
from mesh.observe.explain_text import render
from mesh.policy.compile import Compiled, ServicePolicy
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route
from mesh.policy.verdicts import verdicts
from mesh.resilience.outcome import Kind, Outcome


def route(name: str, **raw: Any) -> Route:
    raw.setdefault("to", [{"service": "hello"}])
    parsed = parse({"kind": "Route", "name": name, **raw}, None)
    assert isinstance(parsed, Route), parsed
    return parsed


TABLE = RouteTable(
    [
        route("exact-x", match={"path_exact": "/x"}),
        route("api", match={"path_prefix": "/api"}),
        route("api-post", match={"path_prefix": "/api", "methods": ["POST"]}),
        route(
            "canary",
            match={"path_prefix": "/api", "headers": [{"name": "x-canary", "exact": "1"}]},
        ),
        route("json", match={"path_regex": r".*\.json"}),
        route("admin", match={"hosts": ["admin.example.com"]}),
        route("shop", match={"hosts": ["*.example.com"], "path_prefix": "/shop"}),
    ]
)


def said(method: bytes, host: bytes, target: bytes, **headers: str) -> list[tuple[str, str]]:
    pairs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return [(v.route, v.outcome) for v in verdicts(TABLE, method, host, target, pairs)]


def test_each_route_says_why_in_the_order_tried() -> None:
    # Same prefix: the routes with more conditions are tried first (then by name).
    assert said(b"GET", b"www.example.com", b"/api/v1?q=1") == [
        ("api-post", "method"),
        ("canary", "header"),
        ("api", "matched"),
        ("shop", "path"),  # the host's routes, in the order tried: wildcard hosts first
        ("exact-x", "path"),
        ("json", "path"),
        ("admin", "host"),
    ]
    assert said(b"GET", b"www.example.com", b"/api/v1", x_canary="1")[:3] == [
        ("api-post", "method"),
        ("canary", "matched"),
        ("api", "outranked"),
    ]
    # A wildcard host's routes come before the routes naming no host.
    assert said(b"GET", b"www.example.com", b"/shop/a.json")[:2] == [
        ("shop", "matched"),
        ("json", "outranked"),
    ]


def test_the_reasons_name_the_failing_condition() -> None:
    reasons = {
        v.route: v.reason
        for v in verdicts(TABLE, b"GET", b"hello", b"/api/v1", [(b"X-Canary", b"2")])
    }
    assert reasons["api-post"] == "method GET is not POST"
    assert reasons["canary"] == "needs header x-canary: 1"
    assert reasons["api"] == "path under /api"
    assert reasons["exact-x"] == "path /api/v1 is not /x"
    assert reasons["json"] == r"path /api/v1 does not match .*\.json"
    assert reasons["admin"] == "host hello is not admin.example.com"


def test_the_verdicts_agree_with_the_match() -> None:
    hosts = (b"", b"admin.example.com", b"a.example.com")
    targets = (b"/x", b"/api", b"/api/", b"/shop/x.json", b"*", b"/y")
    for method, host, target, headers in itertools.product(
        (b"GET", b"POST"), hosts, targets, ([], [(b"x-canary", b"1")])
    ):
        found = TABLE.match(method, host, target, headers)
        winners = [
            v.route
            for v in verdicts(TABLE, method, host, target, headers)
            if v.outcome == "matched"
        ]
        assert winners == ([] if found is None else [found.route.name]), (method, host, target)


# --- the whole explanation, over a directory and a view ---------------------------------

WEIGHTED = route(
    "split",
    match={"path_prefix": "/shop"},
    to=[
        {"service": "hello", "weight": 90, "subset": {"version": "v1"}},
        {"service": "hello", "weight": 10, "subset": {"version": "v2"}},
    ],
    timeouts={"request": "2s"},
)


def vantage(router: Any, *, table: RouteTable | None = None) -> tuple[Vantage, Directory]:
    view: View = new_view()
    view, _ = feed(
        view,
        heartbeat("hello-1", "hello", health="passing", version="v1", zone="a"),
        heartbeat("hello-2", "hello", health="passing", version="v1", zone="b", port=9001),
        heartbeat("hello-3", "hello", health="passing", version="v2", weight=3, port=9002),
        heartbeat("hello-4", "hello", health="failing", version="v1", port=9003),
        now=10.0,
    )
    directory = Directory(node="gw-1")
    directory.set_policies(Compiled(routes=table, services={}, default=ServicePolicy()))
    directory.update(view, 10.0)
    revisions = {"route.split": 7}
    return Vantage("gw-1", "gateway", router, directory, view, revisions), directory


def test_a_weighted_split_names_each_subset_and_its_instances() -> None:
    table = RouteTable([WEIGHTED])
    node, directory = vantage(PolicyRouter(table, None, random.Random(1)), table=table)
    # hello-2 fails at once (a refused connection): ejected here for 30 s.
    state = directory.admit("hello")
    state.limit.release()
    directory.observe(
        state,
        directory.pick(state, random.Random(1), 20.0, (("version", "v1"),), {"hello-1"}, None),
        Outcome(Kind.REFUSED),
        20.0,
    )
    answer = explain(node, Question("GET", "/shop/cart", "www.example.com"), 21.0, 1000.0)

    assert answer.error == ""
    assert msgspec.json.decode(msgspec.json.encode(answer), type=Explanation) == answer
    assert answer.chosen is not None
    assert (answer.chosen.route, answer.chosen.revision, answer.chosen.by) == ("split", 7, "policy")
    assert answer.chosen.timeouts == {"request": 2.0}
    assert [(d.weight, d.share, d.subset) for d in answer.destinations] == [
        (90, 0.9, {"version": "v1"}),
        (10, 0.1, {"version": "v2"}),
    ]
    v1, v2 = answer.destinations
    rows = {i.instance: (i.state, i.health, i.candidate, i.ejected_until) for i in v1.instances}
    assert rows == {
        "hello-1": ("alive", "passing", True, None),
        "hello-2": ("alive", "passing", False, 1000.0 + 30.0 - 1.0),
        "hello-4": ("alive", "failing", False, None),
    }
    assert [(i.instance, i.weight, i.candidate, i.in_flight) for i in v2.instances] == [
        ("hello-3", 3, True, 0)  # least_request counts requests in flight
    ]
    text = render(answer)
    assert "each request goes to one destination, chosen at random by weight:" in text
    assert "service hello [version=v2]: 10% of requests (weight 10)" in text
    [row] = [line.split() for line in text.splitlines() if line.startswith("  hello-2 ")]
    assert row[:4] == ["hello-2", "alive", "passing", "no"]
    assert "until" in row
    assert v1.policy.revision is None  # no Service document: the node's settings
    assert (v1.policy.algorithm, v1.policy.retries, v1.policy.max_requests) == (
        "least_request",
        2,
        1024,
    )


def test_default_routes_and_errors_are_explained() -> None:
    node, _ = vantage(DefaultRoutes({"hello"}.__contains__))
    answer = explain(node, Question("GET", "/hello/x"), 11.0, 100.0)
    assert answer.routes == []
    assert answer.chosen is not None
    assert (answer.chosen.route, answer.chosen.by, answer.chosen.target) == (
        "path",
        "default",
        "/x",
    )
    assert [len(d.instances) for d in answer.destinations] == [4]

    node, _ = vantage(no_route)
    assert explain(node, Question("GET", "/hello/x"), 11.0, 100.0).error.startswith("no route")
    table = RouteTable([WEIGHTED])
    node, _ = vantage(PolicyRouter(table, None, random.Random(1)), table=table)
    answer = explain(node, Question("GET", "/other"), 11.0, 100.0)
    assert (answer.chosen, answer.destinations) == (None, [])
    assert (answer.status, answer.flags) == (404, "NR")
    assert answer.error == "no route matches GET b'/other'"  # the router's own words
    assert [(v.route, v.outcome) for v in answer.routes] == [("split", "path")]
    assert "goes nowhere: gw-1 answers 404 NR (no route matches GET" in render(answer)
    # Paths as sent (MESH_NORMALIZE_PATH off): policy routes refuse dot segments.
    raw = Vantage("gw-1", "gateway", node.router, node.directory, node.view, {}, False)
    dots = explain(raw, Question("GET", "/shop/../admin"), 11.0, 100.0)
    assert (dots.status, dots.flags, dots.error) == (400, "DPE", "dot segments in the path")


def test_a_route_to_a_service_the_node_does_not_know_is_a_404_as_admission_says() -> None:
    table = RouteTable([route("ghost", to=[{"service": "ghost"}])])
    node, _ = vantage(PolicyRouter(table, None, random.Random(1)), table=table)
    answer = explain(node, Question("GET", "/x", "gw"), 11.0, 100.0)
    assert (answer.status, answer.flags, answer.error) == (404, "NR", "no service named 'ghost'")
    assert answer.chosen is not None  # the route matched; the service is not in the view
    assert [(d.service, d.known) for d in answer.destinations] == [("ghost", False)]


# --- 404 NR answers name the routes considered -------------------------------------------


def test_a_404_names_the_routes_for_the_host_but_not_those_with_auth_or_other_hosts() -> None:
    keys = {"type": "api_key", "keys": [{"consumer": "ops", "sha256": "a" * 64}]}
    table = RouteTable(
        [
            *(route(f"r{n:02}", match={"path_prefix": f"/r{n}"}) for n in range(20)),
            route("guarded", match={"path_prefix": "/admin"}, auth=keys),
            route("elsewhere", match={"hosts": ["other.example.com"]}),
        ]
    )
    router = PolicyRouter(table, None, random.Random(1))
    with pytest.raises(NoRoute) as caught:
        router(RequestHead(b"/nothing", b"www.example.com"), 0.0)
    assert caught.value.routes == tuple(f"r{n:02}" for n in range(CONSIDERED_SHOWN))
    assert caught.value.more_routes == 20 - CONSIDERED_SHOWN
    body = replies.render(caught.value, keep_alive=False, date=b"").partition(b"\r\n\r\n")[2]
    assert b'"routes":["r00",' in body
    assert b'"more_routes":4' in body
    assert b"guarded" not in body
    assert b"elsewhere" not in body


def test_a_404_of_the_default_routes_names_the_policy_routes_too() -> None:
    router = PolicyRouter(
        RouteTable([WEIGHTED]), DefaultRoutes({"hello"}.__contains__), random.Random(1)
    )
    with pytest.raises(NoRoute) as caught:
        router(RequestHead(b"/nosuch/x"), 0.0)
    assert caught.value.routes == ("split",)
    assert "no service matches" in caught.value.detail


# --- the request as the engine reads it: its parser, its checks, its answers -------------


def _explained(question: Question, *, normalize_path: bool = True) -> Explanation:
    node, directory = vantage(DefaultRoutes({"hello"}.__contains__))
    plain = Vantage("gw-1", "gateway", node.router, directory, node.view, {}, normalize_path)
    return explain(plain, question, 11.0, 100.0)


@pytest.mark.parametrize(
    ("question", "status", "flags", "detail"),
    [
        (Question("GET", "/hello/%2Fx", "gw"), 400, "DPE", "encoded '/' in the path"),
        (Question("get", "/hello/", "gw"), 400, "DPE", "malformed request: Invalid method"),
        (Question("GET", "/", "[::1"), 400, "DPE", "invalid Host"),
        (Question("GET", "/", "a b"), 400, "DPE", "invalid Host"),
        (Question("GET", "/hello/\x00", "gw"), 400, "DPE", "malformed request: Invalid char"),
        (Question("GET", "/a b", "gw"), 400, "DPE", "malformed request"),
        (Question("GET", "/hello/", "gw", (("Host", "other"),)), 400, "DPE", "repeated Host"),
        (Question("GET", "/nope", "gw"), 404, "NR", "no service matches Host 'gw'"),
        (Question("TRACE", "/hello/", "gw", (("Max-Forwards", "0"),)), 200, "-", "Max-Forwards"),
    ],
)
def test_what_the_engine_answers_itself_is_said_with_its_status_and_flags(
    question: Question, status: int, flags: str, detail: str
) -> None:
    answer = _explained(question)
    assert (answer.status, answer.flags, answer.chosen, answer.destinations) == (
        status,
        flags,
        None,
        [],
    )
    assert answer.error.startswith(detail)
    assert f"answers {status} {flags} ({detail}" in render(answer)


def test_the_path_is_normalised_as_the_engine_does_before_routing() -> None:
    answer = _explained(Question("GET", "/a/../hello//x/./y", "gw"))
    assert (answer.status, answer.target) == (0, "/hello/x/y")
    assert answer.chosen is not None
    assert (answer.chosen.route, answer.chosen.target) == ("path", "/x/y")
    as_sent = _explained(Question("GET", "/a/../hello/", "gw"), normalize_path=False)
    assert (as_sent.status, as_sent.flags) == (404, "NR")  # segment `a`: no such service


def test_without_a_host_the_question_is_an_http_1_0_request() -> None:
    # HTTP/1.1 requires Host (400 without); 1.0 may leave it out and is routed by path.
    answer = _explained(Question("GET", "/hello/x"))
    assert answer.chosen is not None
    assert (answer.status, answer.chosen.target) == (0, "/x")


@pytest.mark.parametrize(
    "fields",
    [
        {"target": "/a\r\nx-injected: 1"},
        {"target": "/a\nb"},
        {"host": "a\r\nx: 1"},
        {"headers": [["x-a", "1\r\nx-b: 2"]]},
        {"headers": [["x-a\r\nx-b", "1"]]},
    ],
)
def test_a_question_with_cr_or_lf_is_no_single_request_and_is_refused(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"method": "GET", "target": "/", **fields}, Question)


KEYED = route(
    "keyed",
    match={"path_prefix": "/v1"},
    auth={
        "type": "api_key",
        "query": "api_key",
        "keys": [{"consumer": "ops", "sha256": hashlib.sha256(b"demo").hexdigest()}],
    },
)


def test_api_keys_are_stripped_as_auth_strips_them_and_never_shown() -> None:
    table = RouteTable([KEYED])
    router = PolicyRouter(table, DefaultRoutes({"hello"}.__contains__), random.Random(1))
    node, _ = vantage(router, table=table)

    answer = explain(node, Question("GET", "/v1/hi?x=1&api_key=demo", "api"), 11.0, 100.0)
    assert answer.chosen is not None
    assert answer.chosen.target == "/v1/hi?x=1"  # what the upstream receives
    assert answer.target == "/v1/hi?x=1&api_key=***"
    # Authenticated as a request is, the upstream gets the same target.
    sent = router(RequestHead(b"/v1/hi?x=1&api_key=demo", b"api"), 0.0)
    assert sent.target.decode() == answer.chosen.target

    elsewhere = explain(node, Question("GET", "/nope?api_key=demo", "api"), 11.0, 100.0)
    assert (elsewhere.status, elsewhere.flags) == (404, "NR")
    twice = explain(node, Question("GET", "/v1/?api_key=a&api_key=b", "api"), 11.0, 100.0)
    assert (twice.status, twice.flags) == (401, "UAEX")  # whatever the keys
    for said in (answer, elsewhere, twice):
        encoded = msgspec.json.encode(said)
        assert b"demo" not in encoded
        assert b"api_key=a" not in encoded
        assert "demo" not in render(said)
