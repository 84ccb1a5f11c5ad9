"""The membership view as a pure state machine: apply(view, msg, now) and tick(view, now)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import msgspec

from mesh.membership import deadlines
from mesh.membership.deadlines import GONE_KEY, Key, Queue
from mesh.membership.pmap import PMap
from mesh.messages import Beat, Event, EventKind, Gone, Heartbeat, Leave, Message
from mesh.timing import Timing, clamp_interval, down_at, forget_at, suspect_at


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

    # "stale" | "unknown" | "conflict" | "incarnation" (a beat of an incarnation not known)
    reason: str


@dataclass(frozen=True, slots=True)
class Missed:
    """A short beat says this view lacks what the service's nodes sent: a record it never
    held, or messages between the last one and this (a gap in seq: a changed record may
    have been among them). The shell asks that service's nodes for their records, rather
    than wait for the next periodic full record (10 beats: 5 minutes at 30 s)."""

    service: str


Effect = Event | Dropped | Missed
_NONE: PMap[str, bool] = PMap()


@dataclass(frozen=True, slots=True)
class View:
    """Persistent: every step returns a new view sharing all but what it changed, and the
    old one stays as it was (so a step costs O(log N), whatever the fleet's size)."""

    timing: Timing
    members: PMap[str, Member] = field(default_factory=PMap)
    frozen_at: float | None = None  # set while our own NATS connection is down
    version: int = 0  # bumped on every change that can alter routing
    # The services whose routing changed since version `changed_since` (the step before,
    # unless a shell merged several steps): a reader that adopted that version rebuilds
    # only these (mesh.forwarding.directory); any other reader rebuilds everything.
    changed: frozenset[str] = frozenset()
    changed_since: int = -1
    # Each service's instances (the ids in `members`), so that one service is read alone.
    services: PMap[str, PMap[str, bool]] = field(default_factory=PMap)
    # When each member is next due for expiry (see `tick`): bookkeeping, not what the view
    # holds, and linked lists as deep as the messages since the last tick, which `==`
    # would compare recursively.
    queues: Mapping[Key, Queue] = field(default_factory=dict, compare=False)
    # Views derived from one another share it: a reader can tell a successor from a
    # view built anew that happens to carry the next version.
    lineage: object = field(default_factory=object, compare=False)

    def of_service(self, service: str) -> Iterator[Member]:
        """The members of `service`, tombstones included, in no particular order."""
        members = self.members
        return (members[instance] for instance in self.services.get(service, _NONE))


def holding(timing: Timing, members: Mapping[str, Member]) -> View:
    """A view of `members` as they are (tests and tools that build one by hand)."""
    view = View(timing)
    for member in members.values():
        view = _with(view, member, routing_changed=True, new=True)
    return view


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


def _due(member: Member, *, closed: bool = False) -> tuple[Key, deadlines.Entry]:
    """Where a member just stored, in any state, waits for expiry: a tombstone until
    forgotten, a suspect until down (`closed`: made so by presence), a live one until
    suspect."""
    if member.state in GONE:
        return GONE_KEY, (member.since, member.instance)
    if member.state is State.SUSPECT:
        kind = deadlines.CLOSED if closed else deadlines.SUSPECT
    else:
        kind = deadlines.LIVE
    return (kind, clamp_interval(member.record.interval)), (member.heard, member.instance)


def _with(
    view: View, member: Member, *, routing_changed: bool, new: bool = False, closed: bool = False
) -> View:
    """`view` holding `member` (`new`: an instance it did not hold); built field by field,
    as this runs for every message received."""
    instance, service = member.instance, member.record.service
    services = view.services
    if new:
        services = services.set(service, services.get(service, _NONE).set(instance, True))
    key, entry = _due(member, closed=closed)
    return View(
        view.timing,
        view.members.set(instance, member),
        view.frozen_at,
        view.version + 1 if routing_changed else view.version,
        frozenset((service,)) if routing_changed else view.changed,
        view.version if routing_changed else view.changed_since,
        services,
        deadlines.pushed(view.queues, key, entry),
        view.lineage,
    )


def apply(
    view: View, message: Message, now: float, *, wall: float | None = None
) -> tuple[View, list[Effect]]:
    """Fold one received message into the view; `wall` is the observer's wall clock
    (epoch seconds; None: unknown, then only a first heartbeat names an arrival)."""
    if isinstance(message, Heartbeat):
        return _heartbeat(view, message, now, wall)
    if isinstance(message, Beat):
        return _beat(view, message, now)
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
        return _with(view, member, routing_changed=True, new=old is None), started
    if (hb.incarnation, hb.seq) <= (old.record.incarnation, old.seq):
        return view, [Dropped("stale")]
    if hb.incarnation > old.record.incarnation:
        member = Member(hb, draining, now, now, hb.seq)
        return _with(view, member, routing_changed=True), _started(member, "instance.restarted")
    if old.state is State.LEFT:
        # A heartbeat racing its own leave: the goodbye wins for this incarnation.
        return view, [Dropped("stale")]
    return _heard(view, old, hb, hb.seq, now)


def _held(view: View, service: str, instance: str) -> Member | Dropped:
    """The member a message of `service`'s `instance` is about, or why it changes nothing:
    not held, or held for another service (instance ids are mesh-wide identities)."""
    old: Member | None = view.members.get(instance)
    if old is None:
        return Dropped("unknown")
    if old.record.service != service:
        return Dropped("conflict")
    return old


def _beat(view: View, beat: Beat, now: float) -> tuple[View, list[Effect]]:
    """A short beat: liveness of the record already held, which it does not repeat. One
    for a record not held (an instance or an incarnation not seen yet) cannot make a
    member (its address is not in it): the record comes with the instance's next full
    heartbeat, every few intervals, or at once in its answer to a sync."""
    old = _held(view, beat.service, beat.instance)
    if isinstance(old, Dropped):
        return view, [old] if old.reason == "conflict" else [old, Missed(beat.service)]
    if beat.incarnation != old.record.incarnation:
        if beat.incarnation < old.record.incarnation or old.state is State.LEFT:
            return view, [Dropped("stale")]
        return view, [Dropped("incarnation"), Missed(beat.service)]
    if beat.seq <= old.seq or old.state is State.LEFT:
        return view, [Dropped("stale")]
    view, effects = _heard(view, old, old.record, beat.seq, now)
    if beat.seq > old.seq + 1:
        effects.append(Missed(beat.service))
    return view, effects


def _heard(
    view: View, old: Member, record: Heartbeat, seq: int, now: float
) -> tuple[View, list[Effect]]:
    """A newer message of the incarnation `old` holds, carrying `record` (the same object
    for a short beat: nothing of it is copied or compared)."""
    state = State.DRAINING if record.draining else State.ALIVE
    member = Member(record, state, now, old.since if state is old.state else now, seq)
    effects: list[Effect] = []
    if old.state in (State.SUSPECT, State.DOWN) and state is State.ALIVE:
        effects.append(_event("instance.up", member, previous=old.state.value))
    elif state is State.DRAINING and old.state is not State.DRAINING:
        effects.append(_event("instance.draining", member))
    if record is not old.record and record.health != old.record.health:
        effects.append(_event(_HEALTH_EVENT[record.health], member))
    changed = state is not old.state or (
        record is not old.record and _routing_key(record) != _routing_key(old.record)
    )
    return _with(view, member, routing_changed=changed), effects


def _leave(view: View, leave: Leave, now: float) -> tuple[View, list[Effect]]:
    old = _held(view, leave.service, leave.instance)
    if isinstance(old, Dropped):
        return view, [old]
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
    old = _held(view, gone.service, gone.instance)
    if isinstance(old, Dropped):
        return view, [old]
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
    return _with(view, member, routing_changed=True, closed=True), [event]


def tick(view: View, now: float) -> tuple[View, list[Effect]]:
    """Expire silent members; frozen views expire nothing (static stability).

    Reads only the fronts of the deadline queues: the entries due, and those a newer
    message made stale (each message's entry is read once), never the whole fleet.
    """
    if view.frozen_at is not None:
        return view, []
    expiry = _Expiry(view, now)
    for key in list(view.queues):
        expiry.run(key)
    return expiry.result()


class _Expiry:
    """One tick's work: the members it changes, their events, the queues' new fronts."""

    def __init__(self, view: View, now: float) -> None:
        self.view = view
        self.now = now
        self.members = view.members
        self.services = view.services
        self.queues = dict(view.queues)
        self.changed: set[str] = set()
        self.effects: list[Effect] = []
        self.moved = False  # a queue's front moved on (stale entries read)

    def run(self, key: Key) -> None:
        gone = key[0] == deadlines.GONE
        if key[0] == deadlines.CLOSED:
            self._run_whole(key)
            return
        oldest, newest = deadlines.front(self.queues[key])
        while oldest is not None:
            (at, instance), rest = oldest
            m = self.members.get(instance)
            # Most entries are stale (a newer message pushed another): one lookup each.
            current = m is not None and (m.since if gone else m.heard) == at
            if current and not self._settle(key, at, m):
                break
            self.moved = True
            oldest = rest
            if oldest is None and newest is not None:
                oldest, newest = deadlines.front((None, newest))
        if oldest is None:
            del self.queues[key]
        else:
            self.queues[key] = (oldest, newest)

    def _run_whole(self, key: Key) -> None:
        """A queue out of deadline order (CLOSED): every entry read, those not due kept."""
        kept: list[deadlines.Entry] = []
        for at, instance in deadlines.entries(self.queues[key]):
            m = self.members.get(instance)
            if m is not None and m.heard == at and not self._settle(key, at, m):
                kept.append((at, instance))
            else:
                self.moved = True
        if kept:
            self.queues[key] = deadlines.of(kept)
        else:
            del self.queues[key]

    def _settle(self, key: Key, at: float, m: Member) -> bool:
        """Act on a front entry that `m` was stored with; False when it is not due yet
        (nor is any behind it)."""
        kind, interval = key
        timing = self.view.timing
        if kind == deadlines.GONE:
            if m.state not in GONE:
                return True  # back since
            if self.now < forget_at(at, timing):
                return False
            self.members = self.members.delete(m.instance)
            service = m.record.service
            left = self.services[service].delete(m.instance)
            self.services = (
                self.services.set(service, left) if left else self.services.delete(service)
            )
            self.changed.add(service)
            return True
        suspects = kind in (deadlines.SUSPECT, deadlines.CLOSED)
        expected = (State.SUSPECT,) if suspects else (State.ALIVE, State.DRAINING)
        if m.state not in expected or clamp_interval(m.record.interval) != interval:
            return True  # no longer live, or heard at another interval (a newer entry waits)
        if self.now >= down_at(at, interval, timing):
            self._store(replace(m, state=State.DOWN, since=self.now))
            self.effects.append(_event("instance.down", m))
            return True
        if kind == deadlines.LIVE and self.now >= suspect_at(at, interval, timing):
            self._store(replace(m, state=State.SUSPECT, since=self.now))
            self.effects.append(_event("instance.suspect", m))
            return True
        return False

    def _store(self, member: Member) -> None:
        self.members = self.members.set(member.instance, member)
        self.queues = deadlines.pushed(self.queues, *_due(member))
        self.changed.add(member.record.service)

    def result(self) -> tuple[View, list[Effect]]:
        view = self.view
        if not self.changed:
            return (replace(view, queues=self.queues) if self.moved else view), []
        view = replace(
            view,
            members=self.members,
            services=self.services,
            queues=self.queues,
            version=view.version + 1,
            changed=frozenset(self.changed),
            changed_since=view.version,
        )
        return view, self.effects


def freeze(view: View, now: float) -> View:
    """Our NATS connection is down: silence now says nothing about the others."""
    return view if view.frozen_at is not None else replace(view, frozen_at=now)


def thaw(view: View, now: float) -> View:
    """Reconnected: every live member gets a full suspect period from now to be heard, at
    our own pace at most. A member beating slowly under presence may have died while we
    were away, its `gone` missed: the shell's sync on reconnecting makes every live member
    answer at once, so only the dead stay silent, and they are suspect as soon as silence
    would make them so without presence."""
    if view.frozen_at is None:
        return view
    members = view.members
    queues = {GONE_KEY: view.queues[GONE_KEY]} if GONE_KEY in view.queues else {}
    ours, silent = view.timing.interval, view.timing.suspect_intervals
    for m in sorted(view.members.values(), key=lambda m: m.heard):
        if m.state in GONE:
            continue
        # Heard "earlier" by the difference of paces: suspect after our own suspicion
        # time unless heard again (any message, a short beat too, puts it right).
        slow = clamp_interval(m.record.interval)
        m = replace(m, heard=now - max(slow - ours, 0.0) * silent)
        members = members.set(m.instance, m)
        kind = deadlines.SUSPECT if m.state is State.SUSPECT else deadlines.LIVE
        queues = deadlines.pushed(
            queues, (kind, clamp_interval(m.record.interval)), (m.heard, m.instance)
        )
    return replace(view, members=members, queues=queues, frozen_at=None)


def without(view: View, service: str) -> View:
    """The view after this node stopped following `service`: its members are forgotten
    silently (they did not leave; others still see them), so no event is derived. Their
    expiry entries go stale (`tick` skips an entry whose member is not held)."""
    instances = view.services.get(service)
    if instances is None:
        return view
    members = view.members
    for instance in instances:
        members = members.delete(instance)
    return replace(
        view,
        members=members,
        services=view.services.delete(service),
        version=view.version + 1,
        changed=frozenset((service,)),
        changed_since=view.version,
    )
