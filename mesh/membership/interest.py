"""Which services a node follows: wanted on use, pinned by policy, dropped when idle (pure)."""

from __future__ import annotations

from collections.abc import Iterable


class Interest:
    """The bookkeeping behind Discovery.want/drop; the caller passes `now` and acts.

    `used` maps services to the monotonic time of their last call: the forwarding path
    writes it directly (one dict store per request, nothing allocated), so it proves
    nothing about what is followed: `followed` (service -> since when) says that.
    A pinned service (named by a policy's `preload`) is never idle.
    """

    __slots__ = ("followed", "idle", "pinned", "used")

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.followed: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.pinned: frozenset[str] = frozenset()

    def follows(self, service: str) -> bool:
        return service in self.followed

    def want(self, service: str, now: float) -> bool:
        """Follow `service` from `now`; True when it was not followed yet."""
        new = service not in self.followed
        if new:
            self.followed[service] = now
        return new

    def pin(self, services: Iterable[str], now: float) -> list[str]:
        """Pin exactly `services` (unpinned ones become droppable); returns the new ones.

        An unpinned service counts as used `now`: it gets a whole idle period, as if
        called once, before it may be dropped.
        """
        pinned = frozenset(services)
        for service in self.pinned - pinned:
            if service in self.followed:
                self.followed[service] = now
        self.pinned = pinned
        return sorted(service for service in pinned if self.want(service, now))

    def idle_ones(self, now: float) -> list[str]:
        """Followed services neither pinned nor used within the idle period."""
        horizon, used = now - self.idle, self.used
        return sorted(
            service
            for service, since in self.followed.items()
            if service not in self.pinned and max(since, used.get(service, since)) <= horizon
        )

    def forget(self, service: str) -> None:
        self.followed.pop(service, None)
        self.used.pop(service, None)
