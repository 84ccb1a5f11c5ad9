"""Which services a node follows: wanted, used, pinned, idle (pure, on a manual clock)."""

from __future__ import annotations

from factories import heartbeat

from mesh.membership import view as membership
from mesh.membership.interest import Interest
from mesh.timing import PRESETS


def test_a_service_is_followed_once_and_dropped_after_the_idle_period_without_calls() -> None:
    interest = Interest(idle=600)
    assert interest.want("orders", now=0.0)
    assert not interest.want("orders", now=5.0)  # already followed: nothing to do
    assert interest.follows("orders")
    assert interest.idle_ones(599.0) == []
    assert interest.idle_ones(600.0) == ["orders"]


def test_each_call_moves_the_idle_period_on() -> None:
    interest = Interest(idle=600)
    interest.want("orders", now=0.0)
    interest.used["orders"] = 500.0  # what the forwarding path stamps per request
    assert interest.idle_ones(1000.0) == []
    assert interest.idle_ones(1100.0) == ["orders"]


def test_a_call_stamped_for_a_service_not_followed_does_not_make_it_followed() -> None:
    """The forwarding path stamps whatever it routed; only want() follows."""
    interest = Interest(idle=600)
    interest.used["orders"] = 10.0
    assert not interest.follows("orders")
    assert interest.want("orders", now=20.0)


def test_pinned_services_are_never_idle_and_unpinned_ones_get_a_whole_period() -> None:
    interest = Interest(idle=600)
    assert interest.pin(["orders", "billing"], now=0.0) == ["billing", "orders"]
    assert interest.idle_ones(10_000.0) == []
    assert interest.pin(["billing"], now=10_000.0) == []  # orders unpinned, still followed
    assert interest.follows("orders")
    assert interest.idle_ones(10_599.0) == []
    assert interest.idle_ones(10_600.0) == ["orders"]


def test_forget_ends_following_and_its_stamps() -> None:
    interest = Interest(idle=600)
    interest.want("orders", now=0.0)
    interest.used["orders"] = 1.0
    interest.forget("orders")
    assert not interest.follows("orders")
    assert "orders" not in interest.used


def test_without_forgets_a_service_silently_and_moves_the_version() -> None:
    view, now = membership.View(PRESETS["local"]), 1.0
    for instance, service in (("o1", "orders"), ("o2", "orders"), ("b1", "billing")):
        view, _ = membership.apply(view, heartbeat(instance, service), now)
    after = membership.without(view, "orders")
    assert set(after.members) == {"b1"}
    assert after.version == view.version + 1
    assert membership.without(after, "orders") is after  # nothing of it left: no change
