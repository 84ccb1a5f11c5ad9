"""The membership view as a pure state machine: apply(view, msg, now) and tick(view, now)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import msgspec

from mesh.messages import Event, EventKind, Gone, Heartbeat, Leave, Message
from mesh.timing import Timing, down_at, forget_at, suspect_at


class State(enum.StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"  # silent for a while: not routed, not yet announced gone
    DOWN = "down"  # silent too long: a tombstone until forgotten
    DRAINING = "draining"  # finishing in-flight work: no new requests
    LEFT = "left"  # said goodbye: a tombstone until forgotten


GONE = frozenset({State.DOWN, State.LEFT})


@dataclass(frozen=True, slots=True)
class Member:
    record: Heartbeat
    state: State
    heard: float  # monotonic time we last accepted a message from it
    since: float  # monotonic time it entered `state`
    seq: int  # highest seq accepted within record.incarnation (a leave advances it too)

    @property
    def instance(self) -> str:
        return self.record.instance

    @property
    def routable(self) -> bool:
        """May receive new requests: alive, passing its health check, not draining."""
        return (
            self.state is State.ALIVE
            and self.record.health == "passing"
            and not self.record.draining
            and self.record.role == "agent"
        )


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message that changed nothing, and why (counted by the shell)."""

    reason: str  # "stale" | "unknown"


Effect = Event | Dropped


@dataclass(frozen=True, slots=True)
class View:
    timing: Timing
    members: Mapping[str, Member] = field(default_factory=dict)
    frozen_at: float | None = None  # set while our own NATS connection is down
    version: int = 0  # bumped on every change that can alter routing


# The seq of an incarnation's first heartbeat (the announcer counts from 1; 0 is accepted
# too). A node seeing an incarnation first at a later seq did not see it start.
FIRST_SEQ = 1


def _event(kind: EventKind, member: Member, *, arrival: bool = False, **detail: str) -> Event:
    """A derived event whose id names the happening, not the observer or the time seen.

    The id is the kind, the instance and its incarnation, then the instance's own seq of
    the message that began the state: every observer of that message derives the same id,
    and the stream stores it once. An `arrival` (an incarnation appearing) is named by the
    incarnation alone, not by the seq first seen nor by the kind: a node that never knew
    the previous incarnation calls a restart `instance.up` where the others say
    `instance.restarted`, and the stream keeps the first copy of the one happening.
    """
    record = member.record
    incarnation = f"{record.service}:{record.instance}:{record.incarnation}"
    return Event(
        id=f"arrival:{incarnation}" if arrival else f"{kind}:{incarnation}:{member.seq}",
        kind=kind,
        service=record.service,
        instance=record.instance,
        detail=detail,
    )


def _young(record: Heartbeat, wall: float | None, grace: float) -> bool:
    """The incarnation (its start, in milliseconds of the instance's wall clock) began
    within `grace` of `wall`, either way: the two clocks may differ a little. Bounded on
    both sides, so that every node's copy of an arrival is published within the grace of
    the start, whenever each joins, and the stream's duplicate window holds them all."""
    return wall is not None and abs(wall - record.incarnation / 1000) < grace


def _started(member: Member, kind: EventKind | None) -> list[Effect]:
    """The events of a new incarnation's arrival: `kind` (if any), and a failing check
    when this heartbeat is the incarnation's first (otherwise it did not start here)."""
    effects: list[Effect] = [] if kind is None else [_event(kind, member, arrival=True)]
    if member.seq <= FIRST_SEQ and member.record.health == "failing":
        effects.append(_event("health.failing", member))
    return effects


_HEALTH_EVENT: dict[str, EventKind] = {"passing": "health.passing", "failing": "health.failing"}


def _routing_key(record: Heartbeat) -> tuple[object, ...]:
    """The fields whose change can alter routing (load figures and seq do not)."""
    return (
        record.role,
        record.host,
        record.port,
        record.zone,
        record.version,
        record.weight,
        tuple(sorted(record.meta.items())),
        record.health,
        record.draining,
        record.inbound_port,
    )


def _with(view: View, member: Member, *, routing_changed: bool) -> View:
    members = dict(view.members)
    members[member.instance] = member
    return replace(view, members=members, version=view.version + routing_changed)


def apply(
    view: View, message: Message, now: float, *, wall: float | None = None
) -> tuple[View, list[Effect]]:
    """Fold one received message into the view; `wall` is the observer's wall clock
    (epoch seconds; None: unknown, then only a first heartbeat names an arrival)."""
    if isinstance(message, Heartbeat):
        return _heartbeat(view, message, now, wall)
    if isinstance(message, Leave):
        return _leave(view, message, now)
    if isinstance(message, Gone):
        return _gone(view, message, now)
    return view, []


def _heartbeat(
    view: View, hb: Heartbeat, now: float, wall: float | None
) -> tuple[View, list[Effect]]:
    old = view.members.get(hb.instance)
    draining = State.DRAINING if hb.draining else State.ALIVE
    if old is not None and old.record.service != hb.service:
        # Instance ids are mesh-wide identities; a second service claiming one is refused.
        return view, [Dropped("conflict")]
    if old is None or (old.state is State.LEFT and hb.incarnation > old.record.incarnation):
        member = Member(hb, draining, now, now, hb.seq)
        # A node that first sees an incarnation after its first heartbeat observes a
        # state, not a happening (it joined later, or the instance came back from a
        # failure it did not witness): the nodes that saw it happen say so. Unless the
        # incarnation is young: nodes starting together (`mesh up`) subscribe after one
        # another's first heartbeats, and nobody would tell. After a goodbye this node
        # saw, a new incarnation is a happening whenever it is seen.
        seen_start = (
            old is not None or hb.seq <= FIRST_SEQ or _young(hb, wall, view.timing.arrival_grace)
        )
        started = _started(member, "instance.up" if seen_start else None)
        return _with(view, member, routing_changed=True), started
    if (hb.incarnation, hb.seq) <= (old.record.incarnation, old.seq):
        return view, [Dropped("stale")]
    if hb.incarnation > old.record.incarnation:
        member = Member(hb, draining, now, now, hb.seq)
        return _with(view, member, routing_changed=True), _started(member, "instance.restarted")
    if old.state is State.LEFT:
        # A heartbeat racing its own leave: the goodbye wins for this incarnation.
        return view, [Dropped("stale")]
    state = draining
    member = Member(hb, state, now, old.since if state is old.state else now, hb.seq)
    effects: list[Effect] = []
    if old.state in (State.SUSPECT, State.DOWN) and state is State.ALIVE:
        effects.append(_event("instance.up", member, previous=old.state.value))
    elif state is State.DRAINING and old.state is not State.DRAINING:
        effects.append(_event("instance.draining", member))
    if hb.health != old.record.health:
        effects.append(_event(_HEALTH_EVENT[hb.health], member))
    changed = state is not old.state or _routing_key(hb) != _routing_key(old.record)
    return _with(view, member, routing_changed=changed), effects


def _leave(view: View, leave: Leave, now: float) -> tuple[View, list[Effect]]:
    old = view.members.get(leave.instance)
    if old is None:
        return view, [Dropped("unknown")]
    if old.record.service != leave.service:
        return view, [Dropped("conflict")]
    if (leave.incarnation, leave.seq) <= (old.record.incarnation, old.seq) or old.state in GONE:
        return view, [Dropped("stale")]
    if leave.incarnation > old.record.incarnation:
        # Goodbye from a restart we never saw announced: the old incarnation is gone too.
        # The tombstone carries the new incarnation so its late heartbeats stay dead.
        record = msgspec.structs.replace(old.record, incarnation=leave.incarnation)
        member = Member(record, State.LEFT, now, now, leave.seq)
        return _with(view, member, routing_changed=True), [_event("instance.left", member)]
    if leave.reason == "drain":
        record = msgspec.structs.replace(old.record, draining=True)
        member = Member(record, State.DRAINING, now, now, leave.seq)
        return _with(view, member, routing_changed=True), [_event("instance.draining", member)]
    member = Member(old.record, State.LEFT, now, now, leave.seq)
    return _with(view, member, routing_changed=True), [_event("instance.left", member)]


def _gone(view: View, gone: Gone, now: float) -> tuple[View, list[Effect]]:
    """NATS saw the incarnation's connection close: suspect (not routed) at once, until a
    later heartbeat of that incarnation brings it back. Its silence still counts from the
    last heartbeat: down comes on the usual clock, not sooner."""
    old = view.members.get(gone.instance)
    if old is None:
        return view, [Dropped("unknown")]
    if old.record.service != gone.service:
        return view, [Dropped("conflict")]
    if gone.incarnation != old.record.incarnation:
        # Another incarnation's connection: a restart's predecessor closing late, or a
        # connection name that claims what the view does not know.
        return view, [Dropped("stale")]
    if old.state in GONE or old.state is State.SUSPECT:
        # Out of routing already: another watcher's copy, or the close after a goodbye.
        return view, []
    member = replace(old, state=State.SUSPECT, since=now)
    event = _event("instance.suspect", member, cause="connection closed")
    if gone.reason:  # the server's words, for whoever reads why
        event = msgspec.structs.replace(event, detail={**event.detail, "reason": gone.reason})
    return _with(view, member, routing_changed=True), [event]


def tick(view: View, now: float) -> tuple[View, list[Effect]]:
    """Expire silent members; frozen views expire nothing (static stability)."""
    if view.frozen_at is not None:
        return view, []
    timing = view.timing
    changes: dict[str, Member | None] = {}
    effects: list[Effect] = []
    for instance, m in view.members.items():
        if m.state in GONE:
            if now >= forget_at(m.since, timing):
                changes[instance] = None
            continue
        interval = m.record.interval
        if now >= down_at(m.heard, interval, timing):
            changes[instance] = replace(m, state=State.DOWN, since=now)
            effects.append(_event("instance.down", m))
        elif m.state is not State.SUSPECT and now >= suspect_at(m.heard, interval, timing):
            changes[instance] = replace(m, state=State.SUSPECT, since=now)
            effects.append(_event("instance.suspect", m))
    if not changes:
        return view, []
    members = dict(view.members)
    for instance, new in changes.items():
        if new is None:
            del members[instance]
        else:
            members[instance] = new
    return replace(view, members=members, version=view.version + 1), effects


def freeze(view: View, now: float) -> View:
    """Our NATS connection is down: silence now says nothing about the others."""
    return view if view.frozen_at is not None else replace(view, frozen_at=now)


def thaw(view: View, now: float) -> View:
    """Reconnected: every live member gets a full suspect period from now to be heard."""
    if view.frozen_at is None:
        return view
    members = {
        instance: m if m.state in GONE else replace(m, heard=max(m.heard, now))
        for instance, m in view.members.items()
    }
    return replace(view, members=members, frozen_at=None)


def without(view: View, service: str) -> View:
    """The view after this node stopped following `service`: its members are forgotten
    silently (they did not leave; others still see them), so no event is derived."""
    members = {i: m for i, m in view.members.items() if m.record.service != service}
    if len(members) == len(view.members):
        return view
    return replace(view, members=members, version=view.version + 1)
