"""An in-memory twin of the NATS bus for unit tests of the shells: same interface, no sockets."""

from __future__ import annotations

import asyncio
import itertools

from mesh.bus import Delivery, Handler, StateListener
from mesh.errors import BusTimeout, BusUnavailable, NoResponders


class MemoryHub:
    """The broker: every MemoryBus attached to one hub sees the others' messages."""

    def __init__(self) -> None:
        self.buses: list[MemoryBus] = []
        self.published: list[Delivery] = []  # everything ever published, for assertions

    def bus(self) -> MemoryBus:
        bus = MemoryBus(self)
        self.buses.append(bus)
        return bus

    async def route(self, delivery: Delivery) -> int:
        self.published.append(delivery)
        handlers = [
            handler
            for bus in self.buses
            if bus.connected
            for pattern, handler in bus.subscriptions
            if matches(pattern, delivery.subject)
        ]
        for handler in handlers:
            await handler(delivery)
        # As from NATS, the next message comes in a later turn of the loop: what the
        # handlers left for the end of this turn (loop.call_soon) has run by then.
        await asyncio.sleep(0)
        return len(handlers)


class MemoryBus:
    """One client of a MemoryHub; `set_connected` simulates outages."""

    _inboxes = itertools.count()

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self._connected = True
        self._listeners: list[StateListener] = []
        self.subscriptions: list[tuple[str, Handler]] = []

    @property
    def connected(self) -> bool:
        return self._connected

    def set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            for listener in self._listeners:
                listener(connected)

    def on_state(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    async def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> None:
        if not self._connected:
            raise BusUnavailable("memory bus disconnected")
        await self._hub.route(Delivery(subject, data, "", headers))

    async def publish_stored(
        self, subject: str, data: bytes, *, msg_id: str, stream: str, timeout: float
    ) -> bool:
        """Published; no stream keeps anything here."""
        await self.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
        return False

    async def subscribe(self, subject: str, handler: Handler) -> None:
        self.subscriptions.append((subject, handler))

    async def unsubscribe(self, subject: str, handler: Handler) -> None:
        if (subject, handler) in self.subscriptions:
            self.subscriptions.remove((subject, handler))

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        if not self._connected:
            raise BusUnavailable("memory bus disconnected")
        inbox = f"_INBOX.memory.{next(self._inboxes)}"
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def collect(delivery: Delivery) -> None:
            if not answer.done():
                answer.set_result(delivery.data)

        self.subscriptions.append((inbox, collect))
        try:
            if await self._hub.route(Delivery(subject, data, inbox)) == 0:
                raise NoResponders("no responders on that subject")
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise BusTimeout(f"no answer on {subject} within {timeout:g} s") from None
        finally:
            self.subscriptions.remove((inbox, collect))

    async def flush(self, timeout: float) -> None:
        if not self._connected:
            raise BusUnavailable("memory bus disconnected")

    async def wait_connected(self) -> None:
        """At once: a memory bus starts connected, and NatsBus waits only for the first time."""

    async def close(self) -> None:
        self._connected = False
        self._hub.buses.remove(self)


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: `*` is one token, a final `>` is one or more tokens."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)
