"""Waiting for the mesh to confirm a change: which live node applied or rejected what."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mesh import clock, subjects
from mesh.bus import Bus, Delivery
from mesh.errors import InvalidMessage
from mesh.messages import Event, decode

ACK_SUBJECT = f"{subjects.PREFIX}.events.policy.>"


@dataclass
class NodeAck:
    role: str
    # key -> (revision, applied?, reason, monotonic time it arrived): every answer heard,
    # kept from before the write's revisions are known (a fast node answers that soon).
    answers: dict[str, tuple[int, bool, str, float]] = field(default_factory=dict)


class AckCollector:
    """Subscribe before writing; then `wait` for every live node to answer every revision.

    `monotonic` is the clock answers are timed by (mesh.clock's, or a test's).
    """

    def __init__(
        self,
        bus: Bus,
        nodes: Mapping[str, str],
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        self._bus = bus
        self._now = monotonic
        self.nodes = {node: NodeAck(role) for node, role in nodes.items()}
        self._expected: dict[str, int] = {}
        # Nodes that still owe an answer: each answer checks its own node only, so that
        # a thousand answers cost a thousand checks, not a scan of every node each.
        self._waiting: set[str] = set()
        self._written_at = monotonic()
        self._done = asyncio.Event()

    async def start(self) -> None:
        await self._bus.subscribe(ACK_SUBJECT, self._on_event)
        await self._bus.flush(2.0)
        self._written_at = self._now()

    def expect(self, revisions: Mapping[str, int], written_at: float) -> None:
        self._expected = dict(revisions)
        self._written_at = written_at
        self._waiting = {node for node, ack in self.nodes.items() if not self.answered(ack)}
        if self._waiting:
            self._done.clear()
        else:
            self._done.set()

    async def _on_event(self, delivery: Delivery) -> None:
        try:
            event = decode(delivery.subject, delivery.data)
        except InvalidMessage:
            return
        if not isinstance(event, Event):
            return
        ack = self.nodes.get(event.instance)
        if ack is None or event.kind not in ("policy.applied", "policy.rejected"):
            return
        key = event.detail.get("key", "")
        revision = int(event.detail.get("revision", "0"))
        previous = ack.answers.get(key)
        if previous is not None and previous[0] > revision:
            return  # an answer about an older revision, arriving late
        applied = event.kind == "policy.applied"
        ack.answers[key] = (revision, applied, event.detail.get("reason", ""), self._now())
        if event.instance in self._waiting and self.answered(ack):
            self._waiting.discard(event.instance)
            if not self._waiting:
                self._done.set()

    def _answer(self, ack: NodeAck, key: str) -> tuple[int, bool, str, float] | None:
        answer = ack.answers.get(key)
        return answer if answer is not None and answer[0] >= self._expected[key] else None

    def answered(self, ack: NodeAck) -> bool:
        return all(self._answer(ack, key) is not None for key in self._expected)

    async def wait(self, timeout: float) -> bool:
        """True when every node answered every key before `timeout`."""
        if not self._waiting:
            return True
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def last_answer(self) -> float:
        """Seconds from the write to the last awaited answer."""
        times = [
            answer[3] - self._written_at
            for ack in self.nodes.values()
            for key in self._expected
            if (answer := self._answer(ack, key)) is not None
        ]
        return max(times, default=0.0)

    def report(self) -> tuple[str, bool]:
        """A table of the answers, and whether every node applied every key."""
        lines = [f"{'NODE':<32} {'ROLE':<8} {'RESULT':<9} TIME"]
        clean = True
        for node, ack in sorted(self.nodes.items()):
            answers = {key: self._answer(ack, key) for key in self._expected}
            rejected = {k: a[2] for k, a in answers.items() if a is not None and not a[1]}
            if rejected:
                result, detail = "rejected", "; ".join(f"{k}: {r}" for k, r in rejected.items())
            elif all(answers.values()):
                result, detail = "applied", ""
            else:
                result, detail = "silent", "no answer before the timeout"
            clean = clean and result == "applied"
            took = max(
                (a[3] - self._written_at for a in answers.values() if a is not None), default=0.0
            )
            when = f"{took * 1000:.0f} ms" if result != "silent" else "-"
            lines.append(f"{node:<32} {ack.role:<8} {result:<9} {when} {detail}".rstrip())
        return "\n".join(lines), clean
