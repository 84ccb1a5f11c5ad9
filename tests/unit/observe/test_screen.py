"""`mesh top`'s output for a given view: the tables people read and the JSON scripts parse."""

from __future__ import annotations

import json

import pytest
from factories import LAN, heartbeat, load_report

from mesh.membership import view as membership
from mesh.membership.view import Member, State, View
from mesh.messages import InstanceTraffic, Load, LoadReport, ServiceTraffic
from mesh.observe import screen
from mesh.observe.top import render


def loads() -> dict[str, LoadReport]:
    """What gw-1 reported."""
    report = load_report(
        "gw-1",
        "gateway",
        load=Load(
            window=2.0,
            services={
                "orders": ServiceTraffic(
                    requests=200,
                    errors=1,
                    inflight=2,
                    latency=[0, 0, 200],
                    instances={
                        "o1": InstanceTraffic(requests=200, errors=1, latency=[0, 0, 200]),
                        "o2": InstanceTraffic(ejected=True),
                    },
                )
            },
        ),
    )
    return {"gw-1": report}


def view() -> View:
    gateway = heartbeat("gw-1", "gateway", role="gateway")
    members = [
        Member(gateway, State.ALIVE, 0.0, 0.0, 1),
        Member(heartbeat("o1", zone="eu-1"), State.ALIVE, 0.0, 0.0, 1),
        Member(heartbeat("o2"), State.ALIVE, 0.0, 0.0, 1),
        Member(heartbeat("b1", "billing"), State.SUSPECT, 0.0, 0.0, 1),
    ]
    return membership.holding(LAN, {m.instance: m for m in members})


def test_the_services_table() -> None:
    text, found = render(view(), loads(), None, json=False)
    assert found
    assert text.splitlines() == [
        "SERVICE  RPS    SUCCESS  P50    P99    INFLIGHT  INSTANCES",
        "billing  0.0    -        -      -      0         1 suspect",
        "orders   100.0  99.50%   3.0ms  5.0ms  2         1 alive, 1 ejected",
    ]


def test_the_instances_table_of_one_service() -> None:
    text, found = render(view(), loads(), "orders", json=False)
    assert found
    assert text.splitlines() == [
        "INSTANCE  STATE    ADDRESS        ZONE  RPS    SUCCESS  P50    P99    INFLIGHT",
        "o1        alive    10.0.0.1:9000  eu-1  100.0  99.50%   3.0ms  5.0ms  0",
        "o2        ejected  10.0.0.1:9000  -     0.0    -        -      -      0",
    ]


def test_json_carries_the_figures_unrounded_and_null_where_nothing_was_sent() -> None:
    text, _ = render(view(), loads(), None, json=True)
    rows = {row["service"]: row for row in json.loads(text)["services"]}
    assert rows["orders"]["signals"]["rate"] == 100.0
    assert rows["orders"]["signals"]["success"] == pytest.approx(0.995)
    assert rows["orders"]["states"] == {"alive": 1, "ejected": 1}
    assert rows["billing"]["signals"]["p99"] is None
    text, found = render(view(), loads(), "orders", json=True)
    assert found
    assert [r["instance"] for r in json.loads(text)["instances"]] == ["o1", "o2"]


def test_a_service_nobody_knows_is_not_found() -> None:
    assert render(view(), loads(), "nosuch", json=False) == (
        "no instances of 'nosuch' (yet)",
        False,
    )
    assert render(view(), loads(), "nosuch", json=True) == (
        '{"service":"nosuch","instances":[]}',
        False,
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), (0.0005, "0.5ms"), (0.25, "250.0ms"), (1.0, "1.00s"), (12.5, "12.50s")],
)
def test_durations_are_shown_in_ms_below_a_second(value: float | None, shown: str) -> None:
    assert screen.seconds(value) == shown
