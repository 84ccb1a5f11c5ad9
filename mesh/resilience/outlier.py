"""Outlier ejection (Envoy's): failure streaks eject an instance for a while, under a cap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mesh.resilience.outcome import HARD, Kind, Outcome

_GATEWAY_STATUS = frozenset({502, 503, 504})
_NOTHING: tuple[()] = ()


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Every outlier knob and its default; a streak threshold of 0 turns that detector off."""

    # Lower streaks eject sooner but also eject instances with a passing bad patch.
    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 5
    # Longer ejections spare callers a flapping instance, but keep a recovered one idle
    # (the n-th ejection lasts n times base_ejection, at most max_ejection).
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    # The cap keeps outlier detection from emptying a service when the failures are the
    # callers' or the network's: higher trusts the detectors more.
    max_ejected_percent: int = 50

    def __post_init__(self) -> None:
        if self.consecutive_5xx < 0 or self.consecutive_gateway_errors < 0:
            raise ValueError("streak thresholds must not be negative")
        if not 0 < self.base_ejection <= self.max_ejection:
            raise ValueError("need 0 < base_ejection <= max_ejection")
        if not 0 <= self.max_ejected_percent <= 100:
            raise ValueError("max_ejected_percent: 0..100")


@dataclass(frozen=True, slots=True)
class Ejected:
    instance: str
    until: float
    reason: str  # "refused", "reset", "consecutive-5xx", "consecutive-gateway-errors", ...


@dataclass(frozen=True, slots=True)
class Restored:
    instance: str


@dataclass(frozen=True, slots=True)
class Capped:
    """An ejection refused by a cap; for counters and logs, not an event."""

    instance: str
    reason: str
    limit: Literal["max-ejected-percent", "observer-share"]


Effect = Ejected | Restored | Capped


class _Host:
    __slots__ = ("fives", "gateways", "restored_at", "times", "until")

    def __init__(self) -> None:
        self.fives = 0  # consecutive 5xx, failures to answer included
        self.gateways = 0  # consecutive 502/503/504, failures to answer included
        self.times = 0  # the ejection multiplier
        self.until = -math.inf  # ejected until then, while in Ejections._ejected
        self.restored_at: float | None = None  # when the last ejection ended


class Ejections:
    """The ejection state of one service's instances, as seen by one caller.

    An instance is ejected for base_ejection x n, n the times it was ejected, at most
    max_ejection. n steps down by one for every base_ejection the instance then spends
    back in rotation (Envoy too lowers it while a host stays healthy): old failures are
    forgiven. At most max_ejected_percent of `total` instances (the service's members in
    the view) are ejected at once, rounding down, so a lone instance is never ejected.
    `now` must not go backwards.
    """

    __slots__ = ("_ejected", "_hosts", "_max_times", "config", "failing")

    def __init__(self, config: OutlierConfig) -> None:
        self.config = config
        self._hosts: dict[str, _Host] = {}
        # Instances with a streak going: while empty, a success has nothing to reset.
        self.failing: set[str] = set()
        # Ejected instances, including any whose time ran out since the last expire().
        self._ejected: dict[str, _Host] = {}
        self._max_times = math.ceil(config.max_ejection / config.base_ejection)

    @property
    def count(self) -> int:
        """Instances ejected (some may have run out until the next expire())."""
        return len(self._ejected)

    def until(self, instance: str, now: float) -> float | None:
        """When the ejection of `instance` ends, or None if it is not ejected at `now`."""
        host = self._ejected.get(instance)
        return host.until if host is not None and now < host.until else None

    def is_ejected(self, instance: str, now: float) -> bool:

        host = self._ejected.get(instance)
        return host is not None and now < host.until

    def observe(self, instance: str, outcome: Outcome, now: float, total: int) -> Sequence[Effect]:
        """Count one attempt's outcome on the hot path; usually returns an empty tuple.

        Refused and reset eject at once (a process that is gone). Failures to answer count
        as 5xx and as gateway errors, as Envoy maps local-origin errors to 503 when they are
        not split.
        """
        host = self._hosts.get(instance)
        if host is None:
            host = self._hosts[instance] = _Host()
        if now < host.until:
            return _NOTHING  # answers to requests sent before the ejection say nothing new
        kind = outcome.kind
        if kind is Kind.RESPONSE:
            if outcome.status < 500:
                host.fives = host.gateways = 0
                self.failing.discard(instance)
                return _NOTHING
            self.failing.add(instance)
            host.fives += 1
            host.gateways = host.gateways + 1 if outcome.status in _GATEWAY_STATUS else 0
        elif kind in HARD:
            return self.eject(instance, kind.value, now, total)
        else:
            self.failing.add(instance)
            host.fives += 1
            host.gateways += 1
        config = self.config
        if 0 < config.consecutive_gateway_errors <= host.gateways:
            return self.eject(instance, "consecutive-gateway-errors", now, total)
        if 0 < config.consecutive_5xx <= host.fives:
            return self.eject(instance, "consecutive-5xx", now, total)
        return _NOTHING

    def eject(self, instance: str, reason: str, now: float, total: int) -> list[Effect]:
        """Eject `instance` unless it already is or the cap forbids (also on evidence).

        Its streaks start over either way: a capped instance needs a new streak to try again.
        """
        effects: list[Effect] = [*self.expire(now)]
        host = self._hosts.get(instance)
        if host is None:
            host = self._hosts[instance] = _Host()
        if instance in self._ejected:  # expire() just ended the ones that ran out
            return effects
        host.fives = host.gateways = 0
        self.failing.discard(instance)
        if (len(self._ejected) + 1) * 100 > self.config.max_ejected_percent * total:
            effects.append(Capped(instance, reason, "max-ejected-percent"))
            return effects
        config = self.config
        if host.restored_at is not None:
            forgiven = int((now - host.restored_at) // config.base_ejection)
            host.times = max(0, host.times - forgiven)
        host.times = min(host.times + 1, self._max_times)
        host.until = until = now + min(config.base_ejection * host.times, config.max_ejection)
        self._ejected[instance] = host
        effects.append(Ejected(instance, until, reason))
        return effects

    def expire(self, now: float) -> list[Restored]:
        """End the ejections that ran out; call it every tick (ejections also call it)."""
        if not self._ejected:
            return []
        restored = []
        for instance, host in list(self._ejected.items()):
            if now >= host.until:
                host.restored_at = host.until
                del self._ejected[instance]
                restored.append(Restored(instance))
        return restored

    def forget(self, instance: str) -> None:
        """Drop an instance that left the service (down or gone): it no longer counts."""
        self._hosts.pop(instance, None)
        self._ejected.pop(instance, None)
        self.failing.discard(instance)
