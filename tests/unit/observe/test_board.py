"""The dashboard's board: mesh.observe.traffic's rows for every service, as JSON."""

from __future__ import annotations

import msgspec
from factories import heartbeat, load_report

from mesh.membership.view import Member, State
from mesh.messages import InstanceTraffic, Load, ServiceTraffic
from mesh.observe.board import board


def member(instance: str, service: str, state: State = State.ALIVE, **fields: object) -> Member:
    return Member(heartbeat(instance, service, **fields), state, 0.0, 0.0, 1)


def test_each_service_comes_with_its_signals_and_its_instances_states() -> None:
    figures = ServiceTraffic(
        requests=10, errors=1, latency=[10], instances={"o2": InstanceTraffic(ejected=True)}
    )
    load = Load(window=2.0, services={"orders": figures})
    members = [
        member("o2", "orders"),
        member("o1", "orders"),
        member("b1", "billing", State.LEFT),
        member("gw", "gateway", role="gateway"),
    ]

    shown = board("gw", members, {"gw": load_report("gw", "gateway", load=load)}, wall=1.7e9)

    assert (shown.node, shown.at) == ("gw", 1.7e9)
    assert [s.name for s in shown.services] == ["billing", "orders"]  # gateways call, not serve
    billing, orders = shown.services
    assert [(i.instance, i.state) for i in billing.instances] == [("b1", "left")]
    assert [(i.instance, i.state) for i in orders.instances] == [("o1", "alive"), ("o2", "ejected")]
    assert orders.states == {"alive": 1, "ejected": 1}
    assert (orders.signals.rate, orders.signals.success) == (5.0, 0.9)
    page = msgspec.json.decode(msgspec.json.encode(shown))  # what the page reads
    assert page["services"][1]["signals"]["p99"] == orders.signals.p99
    assert page["services"][1]["instances"][1]["state"] == "ejected"


def test_an_empty_view_is_an_empty_board() -> None:
    assert board("gw", [], {}, wall=0.0).services == []
