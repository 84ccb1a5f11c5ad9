"""mesh.haproxy.render: the fragments each feature renders, and every config HAProxy accepts."""

from __future__ import annotations

import pytest
from haproxy_config import Check, compiled, config, plane, route

from mesh.balance.config import BalanceConfig
from mesh.balance.keys import HashSource
from mesh.haproxy.layout import Backend, Server
from mesh.haproxy.render import backends
from mesh.policy.compile import ServicePolicy
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.retry import RetryPolicy


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def section(text: str, head: str) -> str:
    """One section of a configuration: its head line to the blank line after it."""
    start = text.index(head + "\n")
    return text[start : text.find("\n\n", start)]


def test_defaults_only_config_is_valid(checked: Check) -> None:
    text = checked(config(compiled()))
    assert "use_backend %[var(txn.service)] if { var(txn.service) -m found }" in lines(text)
    assert "acl known_host var(txn.host) -m str -- hello world" in lines(text)
    assert "http-request return status 200 content-type text/plain string r1" in lines(text)


def test_without_default_routes_nothing_but_routes_is_reachable(checked: Check) -> None:
    text = checked(config(compiled(), plane(default_routes=False)))
    assert "known_host" not in text
    assert "use_backend" not in text
    assert "no route matches %[method,json(ascii)]" in text


def test_routes_are_tried_in_the_engines_order(checked: Check) -> None:
    table = compiled(
        route(name="any", match={}),
        route(name="root", match={"path_prefix": "/"}),
        route(name="regex", match={"path_regex": "/a/.*"}),
        route(name="short", match={"path_prefix": "/a"}),
        route(name="long", match={"path_prefix": "/a/b/"}),
        route(name="exact", match={"path_exact": "/a/b"}),
        route(name="get", match={"path_exact": "/a/b", "methods": ["GET"]}),
        route(name="wild", match={"hosts": ["*.x.test"]}),
        route(name="wilder", match={"hosts": ["*.test"]}),
        route(name="exacthost", match={"hosts": ["A.x.test"]}),
    )
    text = checked(config(table))
    tried = [
        line.split("str(")[1].split(")")[0] for line in lines(text) if "txn.route) str(" in line
    ]
    order = ["exacthost", "wild", "wilder", "get", "exact", "long", "long", "short", "short"]
    assert tried[: len(order) + 3] == [*order, "regex", "root", "any"]
    assert "{ var(txn.host) -m str -- a.x.test }" in text  # hosts compare in lower case
    assert "{ path -m str '/a/b' } || " not in text  # `||` never joins conditions of a rule


def test_prefixes_match_whole_segments(checked: Check) -> None:
    text = checked(config(compiled(route(name="api", match={"path_prefix": "/api/"}))))
    assert (
        "http-request set-var(txn.route) str(api) if !{ var(txn.route) -m found } "
        "{ path -m str '/api' }"
    ) in lines(text)
    assert "{ path -m beg '/api/' }" in text


def test_methods_and_headers(checked: Check) -> None:
    headers = [
        {"name": "X-Exact", "exact": "a b"},
        {"name": "x-re", "regex": "v[0-9]+"},
        {"name": "x-on", "present": True},
        {"name": "x-off", "present": False},
    ]
    text = checked(
        config(compiled(route(name="h", match={"methods": ["GET", "PUT"], "headers": headers})))
    )
    for part in (
        "{ req.fhdr(x-exact) -m str -- 'a b' }",
        r"{ req.fhdr(x-re) -m reg -- '(?s)\A(?:v[0-9]+)\z' }",
        "{ req.fhdr_cnt(x-on) gt 0 }",
        "{ req.fhdr_cnt(x-off) eq 0 }",
        "{ method GET PUT }",
    ):
        assert part in text


@pytest.mark.parametrize(
    ("prefix", "rewrite", "expected"),
    [
        ("/api", {"strip_prefix": True}, ["'^/api$' '/'", "'^/api(/.*)$' '\\1'"]),
        ("/api", {"replace_prefix": "/v2/"}, ["'^/api(?:/(.*))?$' '/v2/\\1'"]),
        ("/api", {"replace_prefix": "/v2"}, ["'^/api(/.*)?$' '/v2\\1'"]),
        ("/", {"replace_prefix": "/v2/"}, ["'^(?:/(.*))?$' '/v2/\\1'"]),
        (
            "/x",
            {"strip_prefix": "/x.y", "replace_prefix": "/100%"},
            ["'^/x\\.y(/.*)?$' '/100%%\\1'"],
        ),
    ],
)
def test_path_rewrites(
    checked: Check, prefix: str, rewrite: dict[str, object], expected: list[str]
) -> None:
    text = checked(
        config(compiled(route(name="rw", match={"path_prefix": prefix}, rewrite=rewrite)))
    )
    found = [
        line.removeprefix("http-request replace-path ")
        for line in lines(text)
        if "replace-path" in line and "rw" in line
    ]
    assert found == [f"{pair} if {{ var(txn.route) -m str rw }}" for pair in expected]


def test_host_rewrite_and_route_timeouts(checked: Check) -> None:
    text = checked(
        config(
            compiled(
                route(
                    name="t",
                    rewrite={"host": "in.example"},
                    timeouts={"request": 2, "per_try": 0.5},
                    to=[{"service": "hello"}],
                )
            )
        )
    )
    assert "http-request set-header host in.example if { var(txn.route) -m str t }" in lines(text)
    assert "http-request set-timeout server 500ms if { var(txn.route) -m str t }" in lines(text)


def test_weighted_split_between_services(checked: Check) -> None:
    to = [
        {"service": "hello", "weight": 3},
        {"service": "none", "weight": 0},
        {"service": "world", "weight": 1},
    ]
    text = checked(config(compiled(route(name="s", to=to))))
    assert "http-request set-var(txn.pick) rand(4) if { var(txn.route) -m str s }" in lines(text)
    assert (
        "use_backend hello if { var(txn.route) -m str s } { var(txn.pick) -m int lt 3 }"
        in lines(text)
    )
    assert (
        "use_backend world if { var(txn.route) -m str s } { var(txn.pick) -m int lt 4 }"
        in lines(text)
    )
    assert "backend none" not in text


def test_subsets_have_their_own_backend(checked: Check) -> None:
    revision = compiled(route(name="s", to=[{"service": "hello", "subset": {"version": "v2"}}]))
    assert Backend("hello", (("version", "v2"),)) in backends(revision, plane())
    checked(config(revision))


def test_backends_are_the_destinations_and_the_default_routes_services() -> None:
    revision = compiled(route(name="s", to=[{"service": "api"}, {"service": "zero", "weight": 0}]))
    assert backends(revision, plane(hidden=frozenset({"world"}))) == (
        Backend("api"),
        Backend("hello"),
    )
    assert backends(revision, plane(default_routes=False)) == (Backend("api"),)


@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        (BalanceConfig(algorithm="round_robin"), ["balance roundrobin"]),
        (BalanceConfig(algorithm="least_request"), ["balance random(2)"]),
        (BalanceConfig(algorithm="random"), ["balance random(1)"]),
        (BalanceConfig(algorithm="least_response_time"), ["balance leastconn"]),
        (BalanceConfig(algorithm="consistent_hash"), ["balance source", "hash-type consistent"]),
        (
            BalanceConfig(algorithm="consistent_hash", hash_on=HashSource("header", "X-User")),
            ["balance hdr(x-user)", "hash-type consistent"],
        ),
        (
            BalanceConfig(algorithm="consistent_hash", hash_on=HashSource("cookie", "Sess")),
            ["balance hash req.cook(Sess)", "hash-type consistent"],
        ),
    ],
)
def test_balancing(checked: Check, balance: BalanceConfig, expected: list[str]) -> None:
    hello = section(checked(config(_with(ServicePolicy(balance=balance)))), "backend hello")
    assert [line for line in lines(hello) if line.startswith(("balance", "hash-type"))][
        :2
    ] == expected


def _with(policy: ServicePolicy) -> object:
    return compiled(services={"hello": policy})


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        (RetryPolicy(), ["retries 2", "retry-on 503 conn-failure empty-response response-timeout"]),
        (RetryPolicy(attempts=0), ["retries 0", "retry-on none"]),
        (RetryPolicy(on=frozenset({"refused"})), ["retries 2", "retry-on conn-failure"]),
        (
            RetryPolicy(on=frozenset({"timeout", 500})),
            ["retries 2", "retry-on 500 conn-failure response-timeout"],
        ),
        (
            RetryPolicy(on=frozenset({"5xx"})),
            [
                "retries 2",
                "retry-on conn-failure empty-response response-timeout 500 501 502 503 504",
            ],
        ),
    ],
)
def test_retries(checked: Check, retry: RetryPolicy, expected: list[str]) -> None:
    policy = ServicePolicy(resilience=ResilienceConfig(retry=retry, max_requests=7))
    hello = section(checked(config(_with(policy))), "backend hello")
    assert [line for line in lines(hello) if line.startswith("retr")] == expected
    assert (
        "http-request disable-l7-retry unless { method GET HEAD OPTIONS PUT DELETE TRACE }" in hello
    )
    assert "if { be_conn gt 7 }" in hello


def test_timeouts_per_try_else_request(checked: Check) -> None:
    policy = ServicePolicy(
        resilience=ResilienceConfig(
            retry=RetryPolicy(per_try_timeout=0.25), connect_timeout=0.1, request_timeout=3
        )
    )
    hello = section(checked(config(_with(policy))), "backend hello")
    assert "timeout connect 100ms" in lines(hello)
    assert "timeout server 250ms" in lines(hello)


def test_servers_by_state(checked: Check) -> None:
    servers = {
        "hello": [
            Server("hello-1", "127.0.0.1", 9001, 10, "ready"),
            Server("hello-2", "127.0.0.1", 9002, 10, "drain"),
            Server("hello-3", "::1", 9003, 256, "maint"),
        ]
    }
    text = checked(config(compiled(), servers=servers))
    assert [line for line in lines(text) if line.startswith("server ")] == [
        "server hello-1 127.0.0.1:9001 weight 10",
        "server hello-2 127.0.0.1:9002 weight 0",
        "server hello-3 ipv6@::1:9003 weight 256 disabled",
    ]
    assert "default-server check inter 1h observe layer4 error-limit 1 on-error mark-down" in text


def test_client_settings_and_sockets(checked: Check) -> None:
    on = plane(
        client_header_timeout=2.5,
        client_idle_timeout=30,
        max_body_bytes=1000,
        listen=(("127.0.0.1", 18000), ("::1", 18000)),
    )
    text = checked(config(compiled(), on))
    for line in (
        "timeout http-request 2500ms",
        "timeout client 30000ms",
        "bind ipv6@::1:18000",
        "log /tmp/natsmesh-test-log.sock len 8192 format raw local0",
    ):
        assert line in lines(text)
    assert "{ req.hdr_val(content-length) gt 1000 }" in text


def test_a_revision_that_haproxy_could_misread_is_refused() -> None:
    with pytest.raises(ValueError, match="revision"):
        plane(revision="r 1")


@pytest.mark.parametrize("value", ["", "-f x", "-m", "a}", "-i", "--"])
def test_a_header_value_that_looks_like_an_option_is_a_value(checked: Check, value: str) -> None:
    text = checked(
        config(compiled(route(name="h", match={"headers": [{"name": "x-a", "exact": value}]})))
    )
    wanted = "{ req.fhdr(x-a) -m len 0 }" if value == "" else "{ req.fhdr(x-a) -m str -- "
    assert wanted in text


def test_service_names_that_look_like_options_are_names(checked: Check) -> None:
    """Names come from any agent's heartbeat, and may start with '-'."""
    text = checked(config(compiled(), plane(known=frozenset({"-f", "-i", "hello"}))))
    assert "acl known_host var(txn.host) -m str -- -f -i hello" in lines(text)


def test_an_absolute_url_without_a_path_goes_upstream_as_slash(checked: Check) -> None:
    """The path is given before the target becomes origin-form, which the rule tests."""
    rules = lines(checked(config(compiled())))
    given = rules.index(
        "http-request set-path / if { url -m beg -i http:// } !{ path -m len gt 0 }"
    )
    assert given < rules.index("http-request set-uri %[pathq] if { url -m beg -i http:// }")


def test_instances_answers_below_500_are_logged_one_in_n(checked: Check) -> None:
    text = checked(config(compiled(), plane(log_sample=10)))
    wanted = "http-response set-log-level silent if { status lt 500 } { rand(10) gt 0 }"
    assert wanted in lines(text)
    assert not any("set-log-level" in line for line in lines(config(compiled())))


def test_sampled_answers_are_numbered_per_server_before_the_log_leaves_them_out(
    checked: Check,
) -> None:
    """Two rules on a server's answer, in its backend (whose rules run before the
    frontend's sampling); the log line carries the numbers. None of it unsampled."""
    text = checked(config(compiled(), plane(log_sample=10)))
    backend = lines(section(text, "backend hello"))
    numbering = [
        "http-response track-sc0 srv_name table mesh:answers",
        "http-response set-var(txn.answer) sc_inc_gpc0(0)",
    ]
    assert [line for line in backend if line.startswith("http-response")] == numbering
    assert "stick-table type string len 128 size 20k store gpc0" in lines(
        section(text, "backend mesh:answers")
    )
    assert "%pid\\t%[var(txn.answer)]\\t%[srv_name,table_gpc0(mesh:answers)]\\t" in text
    unsampled = config(compiled())
    assert "mesh:answers" not in unsampled
    assert "txn.answer" not in unsampled
    assert "%pid\\t-\\t-\\t" in unsampled


def test_keep_alive_and_an_upgrade_that_is_none_or_h2c_are_removed(checked: Check) -> None:
    rules = lines(checked(config(compiled())))
    assert "http-request del-header keep-alive" in rules
    assert (
        "http-request del-header upgrade if { req.fhdr(upgrade) -m found } "
        "!{ req.fhdr(connection) -m sub -i upgrade } || { req.fhdr(upgrade) -m sub -i h2c }"
    ) in rules


def test_answers_are_dated_and_name_the_proxy_and_a_host_is_required(checked: Check) -> None:
    rules = lines(checked(config(compiled())))
    date = (
        "http-after-response set-header date %[date,http_date] unless { res.fhdr(date) -m found }"
    )
    assert date in rules
    assert 'http-response add-header via "1.1 natsmesh"' in rules
    assert any(
        rule.startswith("http-request return status 400 ")
        and rule.endswith("if !{ req.fhdr(host) -m found } { req.ver 1.1 }")
        for rule in rules
    )


def test_max_forwards_and_hop_by_hop_headers_of_answers(checked: Check) -> None:
    rules = lines(checked(config(compiled())))
    assert (
        "http-request set-header max-forwards %[req.fhdr(max-forwards),sub(1)] "
        "if { method TRACE OPTIONS } { req.fhdr(max-forwards) -m int gt 0 }"
    ) in rules
    assert any(
        rule.startswith("http-request return status 400 ")
        and "!{ req.fhdr(max-forwards) -m reg ^[0-9]+$ }" in rule
        for rule in rules
    )
    assert {
        "http-response del-header keep-alive",
        "http-response del-header proxy-authenticate",
    } <= set(rules)


def test_an_invalid_host_or_user_info_is_refused_by_the_engines_rule(checked: Check) -> None:
    (rule,) = [r for r in lines(checked(config(compiled()))) if "req.fhdr(host) -m reg" in r]
    assert rule.startswith("http-request return status 400 ")
    assert "{ url -m beg -i http:// } { url,field(3,/) -m sub @ }" in rule


def test_a_content_length_with_leading_zeros_goes_upstream_canonical(checked: Check) -> None:
    assert (
        "http-request set-header content-length %[req.fhdr(content-length),add(0)] "
        "if { req.fhdr(content-length) -m beg 0 }"
    ) in lines(checked(config(compiled())))
