"""Builders for the mesh.membership.view tests: announced views, tick traces, event ids."""

from __future__ import annotations

from typing import Any

from factories import LAN, feed, heartbeat, kinds, new_view

from mesh.membership import view as v
from mesh.messages import Event
from mesh.timing import Timing


def announced(*messages: Any, now: float = 0.0, timing: Timing = LAN) -> v.View:
    """A view that has applied `messages` (default: one heartbeat of orders/i1) at `now`."""
    view, _ = feed(new_view(timing), *(messages or (heartbeat(),)), now=now)
    return view


def ticks(view: v.View, *times: float) -> tuple[v.View, list[tuple[float, str, list[str]]]]:
    """Tick at each time; return the view and (time, state of i1 or 'gone', event kinds)."""
    trace = []
    for now in times:
        view, effects = v.tick(view, now)
        member = view.members.get("i1")
        trace.append((now, member.state.value if member else "gone", kinds(effects)))
    return view, trace


def events(effects: list[v.Effect]) -> list[Event]:
    """The events among `effects` (drops left out)."""
    return [e for e in effects if isinstance(e, Event)]


def ids(effects: list[v.Effect]) -> list[str]:
    """The ids of the events among `effects`, in order."""
    return [e.id for e in events(effects)]


def member(view: v.View, instance: str = "i1") -> v.Member:
    return view.members[instance]


def routable(view: v.View) -> dict[str, list[v.Member]]:
    """The members the forwarding path may send to (Member.routable), by service."""
    by_service: dict[str, list[v.Member]] = {}
    for instance in sorted(view.members):
        if view.members[instance].routable:
            by_service.setdefault(view.members[instance].record.service, []).append(
                view.members[instance]
            )
    return by_service
