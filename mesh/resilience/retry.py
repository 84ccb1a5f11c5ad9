"""Whether a failed attempt is tried again: retry conditions, retry count and idempotency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mesh.resilience.outcome import Kind, Outcome

Condition = Literal["connect-failure", "refused", "reset", "timeout", "5xx", "gateway-error"] | int

_NO_ANSWER = frozenset({Kind.CONNECT_FAILURE, Kind.REFUSED, Kind.RESET, Kind.TIMEOUT})
# What each named condition covers, as in Envoy's x-envoy-retry-on: "reset", "5xx" and
# "gateway-error" include every attempt that got no answer at all. A bare status code
# in `on` is one of Envoy's retriable_status_codes.
_COVERS: dict[str, frozenset[Kind | int]] = {
    "connect-failure": frozenset({Kind.CONNECT_FAILURE, Kind.REFUSED}),
    "refused": frozenset({Kind.REFUSED}),
    "reset": _NO_ANSWER,
    "timeout": frozenset({Kind.TIMEOUT}),
    "5xx": _NO_ANSWER | frozenset(range(500, 600)),
    "gateway-error": _NO_ANSWER | frozenset({502, 503, 504}),
}

# RFC 9110 §9.2.2. Methods are case-sensitive, so an unknown spelling is not idempotent.
# Both spellings: the engine's parser hands out bytes.
_IDEMPOTENT_NAMES = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
IDEMPOTENT: frozenset[str | bytes] = frozenset(
    [*_IDEMPOTENT_NAMES, *(name.encode() for name in _IDEMPOTENT_NAMES)]
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one service's requests are retried; defaults are DESIGN §10.

    `attempts` counts retries after the first try (Envoy's num_retries): 2 means at most
    3 tries in all, and 0 turns retries off. Backoff is full jitter (backoff.delay).
    """

    attempts: int = 2
    # reset joins DESIGN §10's list: an idempotent request cut before any answer (an
    # instance killed mid-request) is safe to send elsewhere; others are never resent.
    on: frozenset[Condition] = frozenset({"connect-failure", "refused", "reset", 503})
    per_try_timeout: float | None = None  # None: each try may use the whole deadline
    backoff_base: float = 0.025
    backoff_cap: float = 0.250
    # `on` expanded once into outcome kinds and statuses, so `decide` is one set lookup.
    retriable: frozenset[Kind | int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError("attempts: must not be negative")
        if self.per_try_timeout is not None and self.per_try_timeout <= 0:
            raise ValueError("per_try_timeout: must be above 0")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError("backoff: need 0 < base <= cap")
        keys: set[Kind | int] = set()
        for condition in self.on:
            if isinstance(condition, str) and condition in _COVERS:
                keys |= _COVERS[condition]
            elif type(condition) is int and 100 <= condition <= 599:
                keys.add(condition)
            else:
                raise ValueError(f"on: unknown retry condition {condition!r}")
        object.__setattr__(self, "retriable", frozenset(keys))


def decide(policy: RetryPolicy, outcome: Outcome, retries_done: int, method: str | bytes) -> bool:
    """May the request be tried again, on another instance, after `outcome`?

    `retries_done` counts the retries already made (0 after the first try). The retry
    budget and the deadline are the caller's next checks, after this says yes.
    """
    if retries_done >= policy.attempts:
        return False
    key = outcome.status if outcome.kind is Kind.RESPONSE else outcome.kind
    if key not in policy.retriable:
        return False
    # A request that may have reached the upstream may have taken effect there: only an
    # idempotent one can be sent twice without the risk of doing it twice.
    return not outcome.sent or method in IDEMPOTENT
