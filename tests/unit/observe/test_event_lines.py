"""mesh events tail's reading side: how an event reads, and copies folded by id."""

from __future__ import annotations

import time

import pytest
from factories import event

from mesh.observe.event_lines import line
from mesh.observe.events import Seen

AT = 1_764_492_100.25
WHEN = time.strftime("%H:%M:%S", time.localtime(AT))


def test_an_instance_event_names_the_instance_and_who_saw_it() -> None:
    down = event(
        kind="instance.ejected", instance="i1", node="gw-1", at=AT, detail={"reason": "refused"}
    )
    assert line(down) == f"{WHEN}  instance.ejected   orders/i1{' ' * 23} by gw-1 reason=refused"


def test_a_policy_event_says_what_happened_to_which_policy_on_which_node() -> None:
    detail = {"policy": "Route/hello", "key": "route.hello", "revision": "7", "reason": ""}
    applied = event(
        kind="policy.applied",
        service="hello",
        instance="gateway-1",
        node="gateway-1",
        at=AT,
        detail={**detail, "role": "gateway", "after_ms": "3"},
    )
    assert line(applied) == (
        f"{WHEN}  policy.applied     Route/hello rev 7 on gateway-1 (3 ms after publish)"
    )
    refused = event(
        kind="policy.rejected",
        service="hello",
        instance="hello-1",
        at=AT,
        detail={**detail, "reason": "retries.attempts = 99: expected 0 to 10"},
    )
    assert line(refused) == (
        f"{WHEN}  policy.rejected    Route/hello rev 7 on hello-1: "
        "retries.attempts = 99: expected 0 to 10"
    )


@pytest.mark.parametrize(
    ("after_ms", "said"),
    [
        ("0", "0 ms"),
        ("9999", "9999 ms"),
        ("10000", "10 s"),
        ("754000", "12 min"),
        ("7300000", "2 h"),
    ],
)
def test_a_late_answer_says_how_late_in_units_people_read(after_ms: str, said: str) -> None:
    applied = event(
        kind="policy.applied",
        instance="gw-3",
        at=AT,
        detail={"policy": "Route/hello", "revision": "7", "after_ms": after_ms},
    )
    assert line(applied).endswith(f"Route/hello rev 7 on gw-3 ({said} after publish)")


def test_an_older_nodes_acknowledgement_still_names_its_policy_key() -> None:
    older = event(
        kind="policy.applied",
        instance="a1",
        at=AT,
        detail={"key": "service.orders", "revision": "2"},
    )
    assert line(older).endswith("policy.applied     service.orders rev 2 on a1")


def test_seen_lets_each_id_through_once_and_forgets_the_oldest_first() -> None:
    seen = Seen(size=2)
    assert [seen.first_time(i) for i in ("a", "b", "a", "b")] == [True, True, False, False]
    assert seen.first_time("c")  # "a" is forgotten: the window holds b and c
    assert [seen.first_time(i) for i in ("b", "c", "a")] == [False, False, True]
