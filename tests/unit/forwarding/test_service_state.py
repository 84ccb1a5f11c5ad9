"""mesh.forwarding.service_state: one service as a node calls it; what a success may skip."""

from __future__ import annotations

import random

from mesh.balance.endpoint import Endpoint
from mesh.config import Settings
from mesh.forwarding.defaults import default_service
from mesh.forwarding.service_state import ServiceState
from mesh.policy.compile import service_policy
from mesh.resilience import outcome as o
from mesh.resilience.outlier import Ejected


def endpoint(instance: str, version: str = "v1") -> Endpoint:
    return Endpoint("svc", instance, "127.0.0.1", 9000, 1, "", {}, version=version)


def state(**settings: object) -> ServiceState:
    policy = service_policy(default_service(Settings(**settings)), zone="")  # type: ignore[arg-type]
    service = ServiceState("svc", policy, "node-1")
    everyone = (endpoint("a"), endpoint("b"), endpoint("c", "v2"))
    service.refresh(everyone, frozenset(e.instance for e in everyone), 0.0)
    return service


def test_a_success_between_5xx_ends_the_streak() -> None:
    service = state(outlier_consecutive_5xx=3, outlier_consecutive_gateway_errors=0)
    for status in (500, 500, 200, 500, 500):
        effects, _ = service.observe("a", o.response(status), 1.0)
        assert effects == ()
    assert service.ejections.failing == {"a"}
    effects, _ = service.observe("a", o.response(500), 1.0)
    assert [type(e) for e in effects] == [Ejected]
    assert service.ejections.failing == set()  # the ejection starts the streak over


def test_all_well_means_nothing_to_count() -> None:
    service = state()
    assert service.observe("a", o.response(200), 1.0) == ((), None)
    assert not service.ejections.failing
    assert not service.publisher.failing


def test_a_reset_ejects_at_once_and_is_worth_telling_the_mesh() -> None:
    service = state()
    effects, evidence = service.observe("b", o.RESET, 1.0)
    assert [type(e) for e in effects] == [Ejected]
    assert evidence is not None
    assert evidence.instance == "b"


def test_an_instance_that_left_is_not_counted() -> None:
    service = state()
    assert service.observe("gone", o.RESET, 1.0) == ((), None)


def test_pick_honours_exclusions_and_subsets() -> None:
    service = state()
    rng = random.Random(7)
    picks = {service.pick(rng, 1.0, (), {"a"}, None) for _ in range(50)}
    assert {p.instance for p in picks if p is not None} == {"b", "c"}
    assert None not in picks
    subset = (("version", "v2"),)
    picked = service.pick(rng, 1.0, subset, set(), None)
    assert picked is not None
    assert picked.instance == "c"
    assert service.pick(rng, 1.0, (("version", "v9"),), set(), None) is None


def test_hash_key_source_only_for_consistent_hash() -> None:
    assert state().hash_on is None
    assert state(balance_algorithm="consistent_hash").hash_on is not None
