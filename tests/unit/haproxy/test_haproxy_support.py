"""mesh.haproxy.support: every policy feature the HAProxy config would not act on is refused."""

from __future__ import annotations

import pytest
from haproxy_config import compiled, route

from mesh.balance.config import BalanceConfig
from mesh.balance.keys import HashSource
from mesh.haproxy.support import NOT_YET, unsupported
from mesh.policy.compile import ServicePolicy
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
