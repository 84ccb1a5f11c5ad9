"""mesh.policy.decode: documents decode strictly over a node's defaults; problems say where."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from factories import service_defaults
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.policy.decode import parse
from mesh.policy.fields import enc_hook
from mesh.policy.model import Route, Service, key
from mesh.policy.problem import Problem
from mesh.policy.route import RouteMatch

DEFAULTS = service_defaults()

ROUTE: dict[str, Any] = {"kind": "Route", "name": "r", "to": [{"service": "a"}]}
SERVICE: dict[str, Any] = {"kind": "Service", "name": "s"}
ODD_KEYS: dict[Any, Any] = {**ROUTE, 5: 1}


def route(**fields: Any) -> dict[str, Any]:
    return {**ROUTE, **fields}


def service(**fields: Any) -> dict[str, Any]:
    return {**SERVICE, **fields}


def problem(obj: object, defaults: Service = DEFAULTS) -> Problem:
    result = parse(obj, defaults, file="f.yaml", doc_index=3)
    assert isinstance(result, Problem), result
    return result


def test_a_service_that_gives_only_its_name_is_the_defaults_under_that_name() -> None:
    assert parse(SERVICE, DEFAULTS) == msgspec.structs.replace(DEFAULTS, name="s")


def test_each_field_left_out_comes_from_the_defaults_at_any_depth() -> None:
    document = parse(
        service(retries={"attempts": 5, "backoff": {"cap": "1s"}}, timeouts={"per_try": None}),
        service_defaults(retry_on="5xx", per_try_timeout=2.0, connect_timeout=3.0),
    )
    assert isinstance(document, Service)
    assert (document.retries.attempts, document.retries.on) == (5, ("5xx",))
    assert (document.retries.backoff.base, document.retries.backoff.cap) == (0.025, 1.0)
    # Given as null is given: no per-try timeout, whatever the settings say.
    assert (document.timeouts.connect, document.timeouts.per_try) == (3.0, None)


def test_without_defaults_a_service_must_give_every_field() -> None:
    assert problem(SERVICE, None).message.startswith("required field missing")  # type: ignore[arg-type]


def test_checks_across_fields_hold_for_the_merged_document() -> None:
    """A node whose settings make a document invalid says so, naming the field left out."""
    document = service(timeouts={"request": "5s"})
    assert isinstance(parse(document, DEFAULTS), Service)
    found = problem(document, service_defaults(per_try_timeout=10.0))
    assert (found.path, found.value) == ("timeouts.per_try", 10.0)
    assert found.message == (
        "must not exceed request (left out here, so this node's MESH_* settings give it)"
    )
    too_short = problem(service(outlier={"base_ejection": "10m"}), DEFAULTS)
    assert (too_short.path, too_short.value) == ("outlier.max_ejection", 300.0)
    assert "must not be below base_ejection (left out here" in too_short.message


# As older versions stored documents: every field encoded, defaults included.
OLD_BUCKET_VALUES = [
    b'{"kind":"Route","name":"payments","match":{"hosts":["api.example.com",'
    b'"*.payments.example.com"],"path_prefix":"/payments","path_exact":null,"path_regex":null,'
    b'"methods":["GET","POST"],"headers":[]},"to":[{"service":"payments","weight":1,'
    b'"subset":{}}],"rewrite":{"strip_prefix":true,"replace_prefix":"/v1","host":null},'
    b'"timeouts":{"connect":null,"request":3.0,"per_try":null},"rate_limit":'
    b'{"requests_per_second":200.0,"burst":400,"key":"header:x-api-key"},"auth":{"type":"none"}}',
    b'{"kind":"Service","name":"reviews","balance":{"algorithm":"least_request","hash":null,'
    b'"zone_aware":false,"slow_start":30.0,"panic_threshold":0.5,"ewma_decay":10.0,'
    b'"default_rtt":0.03},"timeouts":{"connect":1.0,"request":15.0,"per_try":null},"retries":'
    b'{"attempts":2,"on":["connect-failure","refused","reset",503],"backoff":{"base":0.025,'
    b'"cap":0.25},"budget":{"ratio":0.2,"min_per_second":10.0}},"outlier":{"consecutive_5xx":5,'
    b'"consecutive_gateway_errors":5,"base_ejection":30.0,"max_ejection":300.0,'
    b'"max_ejected_percent":50},"concurrency":{"max_requests":1024},"access":null}',
]


@pytest.mark.parametrize("value", OLD_BUCKET_VALUES)
def test_old_fully_encoded_bucket_values_still_decode_whatever_the_settings(value: bytes) -> None:
    """Every field is given, so the settings change nothing; fields added since (a
    Service's `preload`) take their document defaults."""
    document = parse(json.loads(value), service_defaults(retry_attempts=7, connect_timeout=9))
    assert not isinstance(document, Problem), str(document)
    encoded, old = json.loads(msgspec.json.encode(document, enc_hook=enc_hook)), json.loads(value)
    assert {name: encoded[name] for name in old} == old
    assert {name: v for name, v in encoded.items() if name not in old} in ({}, {"preload": []})


def test_the_hello_route_decodes() -> None:
    document = parse(
        route(
            match={"hosts": ["hello.example.com"], "path_prefix": "/hello"}, auth={"type": "none"}
        ),
        None,
    )
    assert isinstance(document, Route)
    assert document.match.path_prefix == "/hello"
    assert document.to[0].weight == 1


def test_keys_are_lower_case_kind_dot_name() -> None:
    hello = parse(route(name="hello"), None)
    hello_service = parse(service(name="hello-service"), DEFAULTS)
    assert isinstance(hello, Route)
    assert isinstance(hello_service, Service)
    assert key(hello) == "route.hello"
    assert key(hello_service) == "service.hello-service"


def test_documents_built_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="at most one of path_prefix"):
        Route(name="r", to=(), match=RouteMatch(path_prefix="/a", path_exact="/a"))


@pytest.mark.parametrize(
    "obj",
    [
        service(
            timeouts={"connect": "250ms", "request": "2m", "per_try": 3},
            balance={"algorithm": "consistent_hash", "hash": {"cookie": "session"}},
        ),
        route(
            match={"path_regex": "/v[0-9]+/.*", "headers": [{"name": "X-A", "regex": "[a-z]+"}]},
            rewrite={"strip_prefix": "/v1", "replace_prefix": "/", "host": "up.internal"},
            rate_limit={"requests_per_second": 5},
            timeouts={"per_try": "1s"},
        ),
    ],
)
def test_fully_encoded_documents_decode_to_themselves(obj: dict[str, Any]) -> None:
    document = parse(obj, DEFAULTS)
    assert not isinstance(document, Problem)
    assert parse(json.loads(msgspec.json.encode(document, enc_hook=enc_hook)), None) == document


@pytest.mark.parametrize(
    ("obj", "path", "value", "accepted"),
    [
        ([1, 2], "", [1, 2], "a mapping with kind Route or Service"),
        ("kind: Route", "", "kind: Route", "a mapping with kind"),
        (None, "", None, "a mapping with kind"),
        ({"name": "x"}, "kind", msgspec.UNSET, "required field missing: expected one of Route"),
        ({"kind": "Policy", "name": "x"}, "kind", "Policy", "one of Route, Service"),
        ({"kind": "Service"}, "name", msgspec.UNSET, "a name of letters, digits"),
        (service(name="bad name"), "name", "bad name", "a name of letters, digits"),
        (service(name="a" * 129), "name", "a" * 129, "a name of letters"),
        (service(name="orders\n"), "name", "orders\n", "a name of letters"),
        (service(name=7), "name", 7, "a name of letters"),
        (service(colour="red"), "colour", "red", "unknown field; expected one of name, balance"),
        (
            service(balance={"algorithm": "fastest"}),
            "balance.algorithm",
            "fastest",
            "one of consistent_hash, least_request, least_response_time, random, round_robin",
        ),
        (service(balance={"panic_threshold": 2}), "balance.panic_threshold", 2, "from 0 to 1"),
        (service(balance={"zone_aware": "no"}), "balance.zone_aware", "no", "true or false"),
        (
            service(balance={"hash": {"header": "x"}}),
            "balance.hash",
            {"header": "x"},
            "only used with algorithm consistent_hash",
        ),
        (
            service(
                balance={"algorithm": "consistent_hash", "hash": {"header": "x", "cookie": "y"}}
            ),
            "balance.hash",
            {"header": "x", "cookie": "y"},
            "exactly one of header, cookie",
        ),
        (service(retries={"attempts": "3"}), "retries.attempts", "3", "an integer from 0 to 10"),
        (service(retries={"attempts": 11}), "retries.attempts", 11, "an integer from 0 to 10"),
        (service(retries={"attempts": 2.5}), "retries.attempts", 2.5, "an integer"),
        (service(retries={"attemps": 1}), "retries.attemps", 1, "expected one of attempts, on"),
        (
            service(retries={"on": ["connect-failure", 404]}),
            "retries.on[1]",
            404,
            "one of 5xx, connect-failure, gateway-error, refused, reset, timeout "
            "or an integer from 500 to 599",
        ),
        (service(retries={"on": "503"}), "retries.on", "503", "a list of at most 16 items"),
        (
            service(retries={"backoff": {"base": "1s", "cap": "10ms"}}),
            "retries.backoff.cap",
            "10ms",
            "must not be below base",
        ),
        (service(retries={"budget": {"ratio": -0.1}}), "retries.budget.ratio", -0.1, "from 0 to 1"),
        (
            service(timeouts={"connect": "1 sec"}),
            "timeouts.connect",
            "1 sec",
            "a duration such as 250ms",
        ),
        (service(timeouts={"connect": True}), "timeouts.connect", True, "a duration"),
        (service(timeouts={"request": "0s"}), "timeouts.request", "0s", "above 0"),
        (
            service(timeouts={"per_try": "20s"}),
            "timeouts.per_try",
            "20s",
            "must not exceed request",
        ),
        (
            service(outlier={"max_ejection": "1s"}),
            "outlier.max_ejection",
            "1s",
            "must not be below base_ejection",
        ),
        (
            service(outlier={"max_ejected_percent": 101}),
            "outlier.max_ejected_percent",
            101,
            "from 0 to 100",
        ),
        (service(concurrency={"max_requests": 0}), "concurrency.max_requests", 0, "from 1 to"),
        (
            service(access={"allow_from": ["check out"]}),
            "access.allow_from[0]",
            "check out",
            "a service name (letters, digits, '_' and '-') or *",
        ),
        (service(access={"deny": ["a"]}), "access.deny", ["a"], "unknown field"),
        (service(timeouts=None), "timeouts", None, "a mapping with fields connect, request"),
        ({"kind": "Route", "name": "r"}, "to", msgspec.UNSET, "a list of 1 to 32 items"),
        (route(to=[]), "to", [], "a list of 1 to 32 items"),
        (
            route(name="inbound"),
            "name",
            "inbound",
            "kept for the built-in routes (absolute, host, inbound, path)",
        ),
        (
            route(to=[{"service": "a", "weight": 0}]),
            "to",
            [{"service": "a", "weight": 0}],
            "at least one destination needs a weight above 0",
        ),
        (route(to=[{"service": "a", "weight": -1}]), "to[0].weight", -1, "from 0 to 10000"),
        (
            route(to=[{"service": "a", "subset": {"version": 2}}]),
            "to[0].subset[...]",
            {"version": 2},
            "text of at most 128 characters",
        ),
        (
            route(to=[{"service": "a", "subset": {"bad key!": "x"}}]),
            "to[0].subset",
            {"bad key!": "x"},
            "expected keys that are text matching",
        ),
        (route(match={"hosts": ["a_b.com"]}), "match.hosts[0]", "a_b.com", "*.example.com"),
        (route(match={"hosts": ["*"]}), "match.hosts[0]", "*", "a host name"),
        (route(match={"hosts": ["a.*.com"]}), "match.hosts[0]", "a.*.com", "a host name"),
        (route(match={"path_prefix": "api"}), "match.path_prefix", "api", "starting with '/'"),
        (route(match={"path_prefix": "/a?b"}), "match.path_prefix", "/a?b", "no '?' or '#'"),
        (route(match={"path_exact": "/a b"}), "match.path_exact", "/a b", "visible ASCII"),
        (
            route(match={"path_prefix": "/a", "path_exact": "/b"}),
            "match",
            {"path_prefix": "/a", "path_exact": "/b"},
            "at most one of path_prefix, path_exact",
        ),
        (
            route(match={"path_regex": "(a+)+"}),
            "match.path_regex",
            "(a+)+",
            "regex rejected: a repeated group",
        ),
        (route(match={"path_regex": "(?=x)"}), "match.path_regex", "(?=x)", "lookaround"),
        (
            route(match={"path_regex": "[unclosed"}),
            "match.path_regex",
            "[unclosed",
            "not a valid regex",
        ),
        (route(match={"path_regex": 5}), "match.path_regex", 5, "a regular expression string"),
        (route(match={"methods": ["get"]}), "match.methods[0]", "get", "in capitals"),
        (
            route(match={"headers": [{"name": "x"}]}),
            "match.headers[0]",
            {"name": "x"},
            "exactly one of exact, regex or present",
        ),
        (
            route(match={"headers": [{"name": "x", "exact": "a", "present": True}]}),
            "match.headers[0]",
            {"name": "x", "exact": "a", "present": True},
            "exactly one",
        ),
        (
            route(match={"headers": [{"name": "x y", "present": True}]}),
            "match.headers[0].name",
            "x y",
            "an HTTP token",
        ),
        (
            route(match={"headers": [{"name": "x", "exact": "a\r\nb"}]}),
            "match.headers[0].exact",
            "a\r\nb",
            "visible ASCII",
        ),
        (
            route(rewrite={"strip_prefix": True}),
            "rewrite",
            {"strip_prefix": True},
            "needs match.path_prefix",
        ),
        (
            route(rewrite={"replace_prefix": "/v2"}),
            "rewrite",
            {"replace_prefix": "/v2"},
            "needs match.path_prefix",
        ),
        (
            route(rewrite={"strip_prefix": 5}),
            "rewrite.strip_prefix",
            5,
            "true or false or a path starting with '/'",
        ),
        (route(rewrite={"host": "*.x.com"}), "rewrite.host", "*.x.com", "a host name"),
        (
            route(rate_limit={"requests_per_second": 0}),
            "rate_limit.requests_per_second",
            0,
            "above 0 and at most 1000000",
        ),
        (
            route(rate_limit={"requests_per_second": 1, "key": "cookie:x"}),
            "rate_limit.key",
            "cookie:x",
            "client_address, consumer, api_key or header:<name>",
        ),
        (
            route(rate_limit={"requests_per_second": 1, "key": "api_key"}),
            "rate_limit",
            {"requests_per_second": 1, "key": "api_key"},
            "key api_key needs auth of type api_key on the route",
        ),
        (
            route(rate_limit={"requests_per_second": 1, "key": "consumer"}),
            "rate_limit",
            {"requests_per_second": 1, "key": "consumer"},
            "key consumer needs auth (api_key or jwt) on the route",
        ),
        (
            route(rate_limit={"burst": 3}),
            "rate_limit.requests_per_second",
            msgspec.UNSET,
            "required field missing",
        ),
        (route(auth={"type": "oauth"}), "auth.type", "oauth", "one of none, api_key, jwt"),
        (route(auth={"type": "none", "key": 1}), "auth.key", 1, "unknown field"),
        (ODD_KEYS, "", ODD_KEYS, "expected keys that are field names"),
    ],
)
def test_problems_name_path_value_and_what_is_accepted(
    obj: object, path: str, value: object, accepted: str
) -> None:
    found = problem(obj)
    assert (found.file, found.doc_index, found.path) == ("f.yaml", 3, path)
    assert found.value == value or (value is msgspec.UNSET and found.value is msgspec.UNSET)
    assert accepted in found.message


def test_problem_reads_as_one_line() -> None:
    found = problem(service(retries={"attempts": 11}))
    assert str(found) == "f.yaml[3] retries.attempts = 11: expected an integer from 0 to 10"
    missing = problem({"kind": "Service"})
    assert str(missing).startswith("f.yaml[3] name: required field missing")
    whole = Problem(file="f.yaml", doc_index=None, path="", value=msgspec.UNSET, message="m")
    assert str(whole) == "f.yaml: m"
    long = problem(service(name="x" * 500))
    assert len(str(long)) < 200


_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["Route", "Service", "1s", "250ms", "/a", "(a+)+", "a.com", "*.a.com"])
)
_any = _leaf | st.lists(_leaf, max_size=3) | st.dictionaries(st.text(max_size=8), _leaf, max_size=3)


def _section(*names: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from([*names, "x"]), _any, max_size=len(names))


_documents = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("Route"),
            "name": _leaf,
            "to": st.lists(_section("service", "weight", "subset"), max_size=3),
        },
        optional={
            "match": _section(
                "hosts", "path_prefix", "path_exact", "path_regex", "methods", "headers"
            ),
            "rewrite": _section("strip_prefix", "replace_prefix", "host"),
            "rate_limit": _section("requests_per_second", "burst", "key"),
            "auth": _any,
        },
    ),
    st.fixed_dictionaries(
        {"kind": st.just("Service"), "name": _leaf},
        optional={
            "balance": _section("algorithm", "hash", "slow_start", "panic_threshold"),
            "timeouts": _section("connect", "request", "per_try"),
            "retries": _section("attempts", "on", "backoff", "budget"),
            "outlier": _section("consecutive_5xx", "base_ejection", "max_ejection"),
            "access": _any,
        },
    ),
    st.dictionaries(st.sampled_from(["kind", "name", "to"]), _any, max_size=3),
)


@settings(deadline=None)
@given(_documents)
def test_any_input_gives_a_document_or_a_problem_never_an_exception(obj: dict[str, Any]) -> None:
    result = parse(obj, DEFAULTS)
    assert isinstance(result, Route | Service | Problem)
    str(result)
