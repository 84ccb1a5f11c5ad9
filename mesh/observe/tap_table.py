"""The taps a node keeps open, which requests each wants, and the node's record cap: pure."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mesh.forwarding.routing import is_absolute, split_absolute
from mesh.messages import RequestRecord, TapFilter, TapOpen


@dataclass(slots=True)
class OpenTap:
    """One tap as a node knows it, and the records waiting to be sent to it.

    Its filter is also kept in the request's own terms (bytes, a status class digit), so
    that asking whether it wants a request decodes and allocates nothing: every request
    a node serves is asked while a tap is open.
    """

    id: str
    filter: TapFilter
    sample: float
    expires: float  # on the node's monotonic clock: no two machines' clocks are compared
    pending: list[RequestRecord] = field(default_factory=list)
    dropped: int = 0  # since its last batch: over the cap, or no room left
    _method: bytes | None = None
    _prefix: bytes | None = None
    _status: int | None = None

    def __post_init__(self) -> None:
        self.follow(self.filter, self.sample, self.expires)

    def follow(self, wanted: TapFilter, sample: float, expires: float) -> None:
        """Take the filter, ratio and end of the tap's latest announcement."""
        self.filter, self.sample, self.expires = wanted, sample, expires
        self._method = None if wanted.method is None else wanted.method.encode()
        self._prefix = None if wanted.path_prefix is None else wanted.path_prefix.encode()
        self._status = None if wanted.status is None else int(wanted.status[0])

    def wants(self, method: bytes, service: str, route: str, target: bytes, status: int) -> bool:
        """Whether a finished request is one the filter asks for (every given field matches).

        `target` is the request target as received: a prefix (which has no `?`) never
        reaches into the query, and an absolute URL (a service calling through its
        agent's proxy) is matched by its path.
        """
        wanted = self.filter
        if self._prefix is not None:
            if target[:1] != b"/" and is_absolute(target):
                target = split_absolute(target)[1]
            if not target.startswith(self._prefix):
                return False
        return (
            (wanted.service is None or wanted.service == service)
            and (wanted.route is None or wanted.route == route)
            and (self._status is None or self._status == status // 100)
            and (self._method is None or self._method == method)
        )

    def sampled(self, rng: random.Random) -> bool:
        """The sampling draw; none for a tap that wants every match."""
        return self.sample >= 1.0 or rng.random() < self.sample


class TapTable:
    """Open taps by id, at most `most` of them: an announcement opens or renews one, a
    goodbye or its TTL ends it.

    Every request is asked of every open tap, so the data plane's cost per request, and
    the node's per round, stays within `most` taps whatever is announced.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.taps: dict[str, OpenTap] = {}

    def announced(self, message: TapOpen, now: float) -> bool:
        """Take an announcement; False (nothing changed) when it would open one too many."""
        if message.closing:
            self.taps.pop(message.id, None)
            return True
        known = self.taps.get(message.id)
        if known is not None:  # renewed: what it already holds stays
            known.follow(message.filter, message.sample, now + message.ttl)
        elif len(self.taps) >= self.most:
            return False
        else:
            self.taps[message.id] = OpenTap(
                message.id, message.filter, message.sample, now + message.ttl
            )
        return True

    def expire(self, now: float) -> list[str]:
        """Forget the taps whose TTL passed (a killed `mesh tap` never said goodbye)."""
        gone = [tap.id for tap in self.taps.values() if tap.expires <= now]
        for tap_id in gone:
            del self.taps[tap_id]
        return gone


class RecordCap:
    """At most `per_second` takes (records, notices) a second, in windows of a second
    from a `tick`.

    The shell ticks it on its own rounds (a few times a second), so that taking a
    record reads no clock: a window may run a round long, which the cap can afford.
    """

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window_end = float("-inf")
        self._taken = 0

    def tick(self, now: float) -> None:
        if now >= self._window_end:
            self._window_end = now + 1.0
            self._taken = 0

    def take(self) -> bool:
        if self._taken >= self.per_second:
            return False
        self._taken += 1
        return True
