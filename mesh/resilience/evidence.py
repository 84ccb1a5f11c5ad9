"""Mesh-wide failure sharing: which sightings to publish, and ejecting on others' evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mesh.messages import Evidence, Signal
from mesh.resilience.outcome import Kind, Outcome
from mesh.resilience.outlier import Capped, Effect, Ejected, Ejections

HARD_SIGNALS: frozenset[Signal] = frozenset({"refused", "reset"})
# A connect that timed out or found no route is a soft sign, like a request timeout.
_SIGNAL: dict[Kind, Signal] = {
    Kind.REFUSED: "refused",
    Kind.RESET: "reset",
    Kind.TIMEOUT: "timeout",
    Kind.CONNECT_FAILURE: "timeout",
    Kind.RESPONSE: "5xx",
}


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """When our evidence is published, and when others' evidence is believed."""

    streak: int = 5  # a soft streak this long is believed from one observer
    # A shorter soft streak is still published, as a vote: `observers` distinct observers
    # voting within `window` eject. Publishing only full streaks would leave that rule
    # nothing to count.
    vote_streak: int = 3
    observers: int = 2
    window: float = 10.0
    # One observer's word alone keeps at most this share of the service ejected (at
    # least one instance): with max_ejected_percent 50, one faulty observer gets a third.
    observer_share: float = 1 / 3
    republish: float = 10.0  # the same evidence is not published again within this

    def __post_init__(self) -> None:
        if not 1 <= self.vote_streak <= self.streak or self.observers < 1:
            raise ValueError("need 1 <= vote_streak <= streak and observers >= 1")
        if self.window <= 0 or self.republish < 0 or not 0 <= self.observer_share <= 1:
            raise ValueError("need window > 0, republish >= 0 and observer_share in 0..1")


class Publisher:
    """Which of our own sightings of one service's instances go out as Evidence.

    Refused and reset go out at once; 5xx and timeouts when a streak of them (mixed, in
    a row) reaches `vote_streak` and again at `streak`. The same (instance, signal,
    strength) is not repeated within `republish`: others already acted on it.
    """

    __slots__ = ("_sent", "_streaks", "config", "node", "service")

    @property
    def failing(self) -> bool:
        """Some instance has a streak going: a success must be counted to end it."""
        return bool(self._streaks)

    def __init__(self, config: EvidenceConfig, service: str, node: str) -> None:
        self.config = config
        self.service = service
        self.node = node
        self._streaks: dict[str, int] = {}  # only instances now failing: empty when all is well
        self._sent: dict[tuple[str, Signal, bool], float] = {}

    def should_publish(self, instance: str, outcome: Outcome, now: float) -> Evidence | None:
        """Called on every outcome (the hot path is one dict check when nothing fails)."""
        if outcome.kind is Kind.RESPONSE and outcome.status < 500:
            if self._streaks:
                self._streaks.pop(instance, None)
            return None
        signal = _SIGNAL[outcome.kind]
        if signal in HARD_SIGNALS:
            streak, strong = 1, True
        else:
            streak = self._streaks[instance] = self._streaks.get(instance, 0) + 1
            if streak < self.config.vote_streak:
                return None
            strong = streak >= self.config.streak
        key = (instance, signal, strong)
        last = self._sent.get(key)
        if last is not None and now - last < self.config.republish:
            return None
        self._sent[key] = now
        return Evidence(
            service=self.service,
            instance=instance,
            observer=self.node,
            signal=signal,
            streak=streak,
        )

    def forget(self, instance: str) -> None:
        """Drop an instance that left the service."""
        self._streaks.pop(instance, None)
        for key in [key for key in self._sent if key[0] == instance]:
            del self._sent[key]


class Jury:
    """Ejects one service's instances on evidence, through the shared Ejections and its cap.

    Our own evidence counts like anyone's (NATS echoes it back): our vote plus one other
    ejects, and anything we already ejected ourselves is a no-op. Evidence about
    instances not in the view should be dropped by the caller.
    """

    __slots__ = ("_votes", "_word", "config")

    def __init__(self, config: EvidenceConfig) -> None:
        self.config = config
        self._votes: dict[str, dict[str, float]] = {}  # instance -> observer -> when
        self._word: dict[str, set[str]] = {}  # observer -> instances ejected on its word alone

    def limit(self, total: int) -> int:
        """How many instances one observer's word alone may keep ejected."""
        return max(1, math.floor(total * self.config.observer_share))

    def receive(
        self, evidence: Evidence, now: float, total: int, ejections: Ejections
    ) -> list[Effect]:
        instance = evidence.instance
        if ejections.is_ejected(instance, now):
            return []
        reason = f"evidence-{evidence.signal}"
        if evidence.signal in HARD_SIGNALS or evidence.streak >= self.config.streak:
            return self._on_word_of(evidence.observer, instance, reason, now, total, ejections)
        votes = self._votes.setdefault(instance, {})
        votes[evidence.observer] = now
        horizon = now - self.config.window
        for observer in [o for o, at in votes.items() if at < horizon]:
            del votes[observer]
        if len(votes) < self.config.observers:
            return []
        # Corroborated: no single observer is answerable, so none is charged.
        del self._votes[instance]
        return ejections.eject(instance, reason, now, total)

    def _on_word_of(
        self, observer: str, instance: str, reason: str, now: float, total: int, ej: Ejections
    ) -> list[Effect]:
        word = {i for i in self._word.get(observer, ()) if ej.is_ejected(i, now)}
        effects: list[Effect]
        if len(word) >= self.limit(total):
            effects = [Capped(instance, reason, "observer-share")]
        else:
            effects = ej.eject(instance, reason, now, total)
            if any(isinstance(effect, Ejected) for effect in effects):
                word.add(instance)
        if word:
            self._word[observer] = word
        else:
            self._word.pop(observer, None)
        return effects

    def forget(self, instance: str) -> None:
        """Drop an instance that left the service."""
        self._votes.pop(instance, None)
        for word in self._word.values():
            word.discard(instance)
