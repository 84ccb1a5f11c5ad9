"""mesh.haproxy.support: every policy feature the HAProxy config would not act on is refused."""

from __future__ import annotations

import pytest
from haproxy_config import compiled, route

from mesh.balance.config import BalanceConfig
from mesh.balance.keys import HashSource
from mesh.haproxy.support import NOT_YET, unsupported
from mesh.policy.compile import ServicePolicy
from mesh.resilience.budget import BudgetConfig
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.retry import RetryPolicy


def test_what_the_config_acts_on_is_accepted() -> None:
    revision = compiled(
        route(name="ok", match={"path_regex": "/v[0-9]+/.*"}, timeouts={"request": 2}),
        services={
            "hello": ServicePolicy(
                resilience=ResilienceConfig(retry=RetryPolicy(on=frozenset({"5xx", 504})))
            )
        },
    )
    assert unsupported(revision) == []


@pytest.mark.filterwarnings("ignore:Possible nested set")  # Python's view of [[:alpha:]]
def test_each_unsupported_feature_is_named() -> None:
    keys = {"type": "api_key", "header": "x-key", "keys": [{"consumer": "c", "sha256": "0" * 64}]}
    revision = compiled(
        route(name="guarded", auth=keys),
        route(name="limited", rate_limit={"requests_per_second": 5}),
        route(name="quick", timeouts={"connect": 0.1}),
        route(name="posix", match={"path_regex": "/[[:alpha:]]"}),
        route(name="slash", match={"path_prefix": "/a"}, rewrite={"replace_prefix": "/b\\c"}),
        route(name="hash", match={"headers": [{"name": "x#y", "present": True}]}),
        services={
            "hello": ServicePolicy(
                balance=BalanceConfig(
                    algorithm="consistent_hash", hash_on=HashSource("cookie", "a$b")
                ),
                resilience=ResilienceConfig(retry=RetryPolicy(on=frozenset({507}))),
            )
        },
    )
    reasons = unsupported(revision)
    assert all(reason.endswith(NOT_YET) for reason in reasons)
    assert [reason.split(":")[0] for reason in reasons] == [
        "route guarded",
        "route limited",
        "route quick",
        "route posix",
        "route slash",
        "route hash",
        "service hello",
        "service hello",
    ]
    assert "retries on status 507" in reasons[-1]


def test_retry_budget_and_backoff_other_than_the_gateways_are_refused() -> None:
    """HAProxy retries by its own rules: a document may keep the gateway's values only."""
    resilience = ResilienceConfig(
        retry=RetryPolicy(backoff_base=0.1, backoff_cap=1.0),
        budget=BudgetConfig(ratio=0.5),
    )
    reasons = unsupported(compiled(services={"hello": ServicePolicy(resilience=resilience)}))
    assert reasons == [
        f"service hello: retries.budget other than the gateway's is {NOT_YET}",
        f"service hello: retries.backoff other than the gateway's is {NOT_YET}",
    ]
    assert unsupported(compiled(services={"hello": ServicePolicy()})) == []


def test_a_route_whose_conditions_pass_haproxys_64_words_a_line_is_refused() -> None:
    """Validation allows 16 header conditions; HAProxy refuses a line of over 64 words."""
    headers = [{"name": f"x-h{n}", "exact": f"v{n}"} for n in range(12)]
    many = route(name="many", match={"hosts": ["a.test"], "path_prefix": "/p", "headers": headers})
    assert unsupported(compiled(many)) == [
        f"route many: this many match conditions on one route is {NOT_YET}"
    ]
    few = route(name="few", match={"hosts": ["a.test"], "headers": headers[:4]})
    assert unsupported(compiled(few)) == []


def test_a_header_value_of_a_lone_closing_brace_is_refused() -> None:
    brace = route(name="brace", match={"headers": [{"name": "x-a", "exact": "}"}]})
    assert unsupported(compiled(brace)) == [f"route brace: header x-a value '}}' is {NOT_YET}"]
