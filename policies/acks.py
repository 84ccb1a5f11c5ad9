"""Waiting for the mesh to confirm a change: which live node applied or rejected what."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.errors import InvalidMessage
from mesh.messages import Event, decode

ACK_SUBJECT = f"{subjects.PREFIX}.events.policy.>"


@dataclass
class NodeAck:
    role: str
    applied: dict[str, int] = field(default_factory=dict)  # key -> revision
    rejected: dict[str, str] = field(default_factory=dict)  # key -> reason
    last: float = 0.0  # seconds after the write when its last awaited answer came


class AckCollector:
    """Subscribe before writing; then `wait` for every live node to answer every revision."""

    def __init__(self, bus: Bus, nodes: Mapping[str, str]) -> None:
        self._bus = bus
        self.nodes = {node: NodeAck(role) for node, role in nodes.items()}
        self._expected: dict[str, int] = {}
        self._written_at = 0.0
        self._changed = asyncio.Event()

    async def start(self) -> None:
        await self._bus.subscribe(ACK_SUBJECT, self._on_event)
        await self._bus.flush(2.0)

    def expect(self, revisions: Mapping[str, int], written_at: float) -> None:
        self._expected = dict(revisions)
        self._written_at = written_at

    async def _on_event(self, delivery: Delivery) -> None:
        try:
            event = decode(delivery.subject, delivery.data)
        except InvalidMessage:
            return
        if not isinstance(event, Event):
            return
        ack = self.nodes.get(event.instance)
        key = event.detail.get("key", "")
        if ack is None or key not in self._expected:
            return
        revision = int(event.detail.get("revision", "0"))
        if revision < self._expected[key]:
            return  # an answer about an older revision
        if event.kind == "policy.applied":
            ack.applied[key] = revision
            ack.rejected.pop(key, None)
        elif event.kind == "policy.rejected":
            ack.rejected[key] = event.detail.get("reason", "")
        ack.last = time.monotonic() - self._written_at
        self._changed.set()

    def answered(self, ack: NodeAck) -> bool:
        return all(k in ack.applied or k in ack.rejected for k in self._expected)

    async def wait(self, timeout: float) -> bool:
        """True when every node answered every key before `timeout`."""
        deadline = time.monotonic() + timeout
        while not all(self.answered(ack) for ack in self.nodes.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def report(self) -> tuple[str, bool]:
        """A table of the answers, and whether every node applied every key."""
        lines = [f"{'NODE':<32} {'ROLE':<8} {'RESULT':<9} TIME"]
        clean = True
        for node, ack in sorted(self.nodes.items()):
            if ack.rejected:
                result = "rejected"
                detail = "; ".join(f"{k}: {r}" for k, r in ack.rejected.items())
            elif self.answered(ack):
                result, detail = "applied", ""
            else:
                result, detail = "silent", "no answer before the timeout"
            clean = clean and result == "applied"
            when = f"{ack.last * 1000:.0f} ms" if result != "silent" else "-"
            lines.append(f"{node:<32} {ack.role:<8} {result:<9} {when} {detail}".rstrip())
        return "\n".join(lines), clean
