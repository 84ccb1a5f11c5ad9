"""Persistent FIFO queues of (time, instance), kept in time order for the view's expiry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Entry = tuple[float, str]  # when it was heard (or gone), and who
# A linked list as nested pairs, (entry, rest) or None: pushing shares the whole tail.
Link = tuple[Entry, Any] | None
# A queue that is never changed, only derived from (a banker's queue): the oldest entries
# first, and the newest pushed since, newest first. Entries are pushed as the clock goes,
# so a queue of one silence period is in deadline order: expiry reads its front and stops
# at the first entry not yet due, whatever the fleet's size. Each entry is read once
# (reversing `newest` is paid once per entry).
Queue = tuple[Link, Link]

EMPTY: Queue = (None, None)

# Which queue an entry waits in: live members by their (clamped) interval, suspects by
# theirs, and tombstones (down or left) in one, as every one is forgotten after the same time.
# Members that presence made suspect (`gone`) wait in CLOSED: they keep their last heard
# time, pushed out of the order of silence, so that queue is read whole at each tick (it
# holds only the few instances whose connection closed and that are not down yet).
LIVE, SUSPECT, GONE, CLOSED = "live", "suspect", "gone", "closed"
Key = tuple[str, float]
GONE_KEY: Key = (GONE, 0.0)


def pushed(queues: Mapping[Key, Queue], key: Key, entry: Entry) -> dict[Key, Queue]:
    """`queues` (a handful, one per interval in use) with `entry` at the back of `key`'s."""
    out = dict(queues)
    oldest, newest = out.get(key, EMPTY)
    out[key] = (oldest, (entry, newest))
    return out


def entries(queue: Queue) -> list[Entry]:
    """Every entry of `queue`, oldest first."""
    oldest, newest = queue
    found: list[Entry] = []
    while oldest is not None:
        found.append(oldest[0])
        oldest = oldest[1]
    pushed_since: list[Entry] = []
    while newest is not None:
        pushed_since.append(newest[0])
        newest = newest[1]
    return found + pushed_since[::-1]


def of(entries: list[Entry]) -> Queue:
    """A queue holding `entries`, oldest first."""
    oldest: Link = None
    for entry in reversed(entries):
        oldest = (entry, oldest)
    return oldest, None


def front(queue: Queue) -> Queue:
    """The same queue with its oldest entries in `oldest` (None only when it is empty)."""
    oldest, newest = queue
    if oldest is not None or newest is None:
        return queue
    while newest is not None:
        oldest = (newest[0], oldest)
        newest = newest[1]
    return oldest, None
