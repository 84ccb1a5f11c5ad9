"""A node's answers to `mesh explain`: its forwarding state, asked over NATS."""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.clock import Clock
from mesh.errors import BusError
from mesh.forwarding.explanation import Problem, Question
from mesh.metrics import Metrics
from mesh.observe.explain_answer import Vantage, explain

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Question).decode


class Explainer:
    """Subscribes where `mesh explain` asks this node; `now` reads its current state."""

    def __init__(
        self,
        bus: Bus,
        *,
        gateway: bool,
        service: str,
        instance: str,
        state: Callable[[], Vantage],
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._bus = bus
        self._subjects = [subjects.explain(service), subjects.explain(service, instance)]
        if gateway:
            self._subjects.append(subjects.EXPLAIN)
        self._instance = instance
        self._state = state
        self._clock = clock
        self._metrics = metrics

    async def start(self) -> None:
        for subject in self._subjects:
            await self._bus.subscribe(subject, self._answer)

    async def _answer(self, delivery: Delivery) -> None:
        if not delivery.reply:
            return  # a question nobody waits for
        clock = self._clock
        try:
            question = _decode(delivery.data)
            answer = _encode(explain(self._state(), question, clock.monotonic(), clock.wall()))
        except (msgspec.DecodeError, UnicodeEncodeError) as exc:  # HTTP heads are latin-1
            self._metrics.invalid_message("explain")
            answer = _encode(Problem(self._instance, f"unreadable question: {exc}"))
        try:
            await self._bus.publish(delivery.reply, answer)
        except BusError as exc:
            log.debug("explain answer not sent: %s", exc)
