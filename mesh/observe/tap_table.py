"""The taps a node knows of, which requests each wants, and the node's record cap: pure."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mesh.messages import RequestRecord, TapFilter, TapOpen


def matches(
    wanted: TapFilter, method: str, service: str, route: str, path: str, status: int
) -> bool:
    """Whether a finished request is one the filter asks for (every given field matches)."""
    return (
        (wanted.service is None or wanted.service == service)
        and (wanted.route is None or wanted.route == route)
        and (wanted.path_prefix is None or path.startswith(wanted.path_prefix))
        and (wanted.status is None or int(wanted.status[0]) == status // 100)
        and (wanted.method is None or wanted.method == method)
    )


@dataclass(slots=True)
class OpenTap:
    """One tap as a node knows it, and the records waiting to be sent to it."""

    id: str
    filter: TapFilter
    sample: float
    expires: float  # on the node's monotonic clock: no two machines' clocks are compared
    pending: list[RequestRecord] = field(default_factory=list)
    dropped: int = 0  # since its last batch: over the cap, or no room left


class TapTable:
    """Open taps by id: an announcement opens or renews one, a goodbye or its TTL ends it."""

    def __init__(self) -> None:
        self.taps: dict[str, OpenTap] = {}

    def announced(self, message: TapOpen, now: float) -> None:
        if message.closing:
            self.taps.pop(message.id, None)
            return
        known = self.taps.get(message.id)
        if known is None:
            self.taps[message.id] = OpenTap(
                message.id, message.filter, message.sample, now + message.ttl
            )
        else:  # renewed: what it already holds stays
            known.filter, known.sample, known.expires = (
                message.filter,
                message.sample,
                now + message.ttl,
            )

    def expire(self, now: float) -> list[str]:
        """Forget the taps whose TTL passed (a killed `mesh tap` never said goodbye)."""
        gone = [tap.id for tap in self.taps.values() if tap.expires <= now]
        for tap_id in gone:
            del self.taps[tap_id]
        return gone

    def wanting(
        self,
        rng: random.Random,
        method: str,
        service: str,
        route: str,
        path: str,
        status: int,
    ) -> list[OpenTap]:
        """The taps that want this request, each after its sampling draw."""
        return [
            tap
            for tap in self.taps.values()
            if matches(tap.filter, method, service, route, path, status)
            and (tap.sample >= 1.0 or rng.random() < tap.sample)
        ]


class RecordCap:
    """At most `per_second` records a second, in windows of one second from the first."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window_end = float("-inf")
        self._taken = 0

    def take(self, now: float) -> bool:
        if now >= self._window_end:
            self._window_end = now + 1.0
            self._taken = 0
        if self._taken >= self.per_second:
            return False
        self._taken += 1
        return True
