"""mesh.forwarding.directory: a view's next version rebuilds only the services it changed."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from factories import LAN, beat, heartbeat, leave

from mesh.forwarding.directory import Directory
from mesh.forwarding.service_state import ServiceState
from mesh.membership import view as v
from mesh.membership.view import View

SERVICES = ("a", "b", "c", "d")


def routed(view: View) -> set[tuple[str, int]]:
    """The addresses of routable agents, as the pools know them."""
    return {(m.record.host, m.record.port) for m in view.members.values() if m.routable}


def seen(directory: Directory, now: float) -> dict[str, Any]:
    """What the forwarding path reads: which services exist, their endpoints and health."""
    for service in SERVICES:
        directory.state(service)  # made on first use, as a request would
    return {"known": [directory.knows(s) for s in SERVICES], "states": directory.describe(now)}


def step(rng: random.Random, view: View, now: float, seqs: dict[str, int]) -> View:
    index = rng.randrange(16)
    instance, service = f"i{index}", SERVICES[index % 4]
    seq = seqs[instance] = seqs.get(instance, 0) + 1
    roll = rng.random()
    if roll < 0.15:
        return v.tick(view, now)[0]
    if roll < 0.55:
        hb = heartbeat(
            instance,
            service,
            seq=seq,
            port=9000 + index % 6,  # some instances share an address
            health=rng.choice(("passing", "passing", "failing")),
            draining=rng.random() < 0.1,
        )
        return v.apply(view, hb, now)[0]
    if roll < 0.9:
        return v.apply(view, beat(instance, service, seq=seq), now)[0]
    return v.apply(view, leave(instance, service, seq=seq), now)[0]


@pytest.mark.parametrize("seed", range(2))
def test_each_step_adopted_alone_ends_as_a_directory_built_afresh(seed: int) -> None:
    """Every version adopted in turn (only its changed services rebuilt) gives the
    endpoints, health and departed addresses that a whole rebuild from it gives."""
    rng = random.Random(seed)
    view, now, seqs = v.View(LAN), 0.0, dict[str, int]()
    directory = Directory()
    for _ in range(150):
        now += rng.choice((0.0, 0.5, 1.5, 4.0))
        after = step(rng, view, now, seqs)
        if after.version == view.version:
            view = after
            continue
        gone = directory.update(after, now)
        assert gone == routed(view) - routed(after)
        fresh = Directory()
        fresh.update(after, now)
        assert seen(directory, now) == seen(fresh, now)
        view = after


@pytest.mark.parametrize("seed", range(2))
def test_steps_adopted_in_bursts_end_as_a_directory_built_afresh(seed: int) -> None:
    """Discovery tells its listeners once per turn of the loop: a view several steps on,
    naming every service changed since the version adopted last, rebuilds just those."""
    rng = random.Random(seed)
    view, now, seqs = v.View(LAN), 0.0, dict[str, int]()
    directory = Directory()
    directory.update(view, now)
    told, untold = view, set[str]()
    for _ in range(200):
        now += rng.choice((0.0, 0.5, 1.5, 4.0))
        after = step(rng, view, now, seqs)
        if after.version != view.version:
            assert after.changed_since == view.version
            untold |= after.changed
        view = after
        if rng.random() < 0.3:
            burst = replace(view, changed=frozenset(untold), changed_since=told.version)
            assert directory.update(burst, now) == routed(told) - routed(view)
            fresh = Directory()
            fresh.update(view, now)
            assert seen(directory, now) == seen(fresh, now)
            told, untold = view, set()


def test_only_the_services_a_step_changed_are_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    view, _ = v.apply(v.View(LAN), heartbeat("a1", "a", seq=1), 0.0)
    view, _ = v.apply(view, heartbeat("b1", "b", seq=1, port=9001), 0.0)
    directory = Directory()
    directory.update(view, 0.0)
    directory.state("a"), directory.state("b")
    refreshed: list[str] = []
    original = ServiceState.refresh

    def spy(state: ServiceState, *args: Any) -> None:
        refreshed.append(state.name)
        original(state, *args)

    monkeypatch.setattr(ServiceState, "refresh", spy)
    view, _ = v.apply(view, heartbeat("b2", "b", seq=1, port=9002), 1.0)
    assert directory.update(view, 1.0) == set()
    assert refreshed == ["b"]
    assert [i["instance"] for i in directory.describe(1.0)["b"]["instances"]] == ["b1", "b2"]  # type: ignore[index]


def test_a_view_built_anew_is_adopted_whole_whatever_its_version() -> None:
    """A view that is not a successor of the one adopted (same version number or not)
    cannot say what changed since: every service is rebuilt."""
    first, _ = v.apply(v.View(LAN), heartbeat("a1", "a", seq=1), 0.0)
    directory = Directory()
    directory.update(first, 0.0)
    other, _ = v.apply(v.View(LAN), heartbeat("b1", "b", seq=1, port=9001), 0.0)
    other, _ = v.apply(other, heartbeat("c1", "c", seq=1, port=9002), 0.0)
    assert other.version == first.version + 1
    assert directory.update(other, 0.0) == {("10.0.0.1", 9000)}
    assert [directory.knows(s) for s in ("a", "b", "c")] == [False, True, True]
