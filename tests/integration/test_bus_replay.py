"""NatsBus.replay on a real nats-server: from a time, or only the stream's last few."""

from __future__ import annotations

import pytest
from waiting import until

from mesh.bus import Delivery, NatsBus
from mesh.config import Settings
from mesh.playground.natsserver import NatsServer


@pytest.fixture
async def bus(module_nats: NatsServer) -> NatsBus:
    bus = NatsBus(Settings(nats_url=module_nats.url), name="replay-test")
    await bus.start(wait=5)
    return bus


async def test_a_replay_of_the_last_few_reads_only_those_then_follows(bus: NatsBus) -> None:
    await bus.ensure_stream(
        "T_REPLAY", ["test.replay.>"], max_age=60, max_bytes=1 << 20, duplicate_window=1
    )
    for n in range(30):
        await bus.client.jetstream().publish(f"test.replay.{n}", str(n).encode())
    everything: list[bytes] = []
    latest: list[bytes] = []

    async def keep(into: list[bytes], delivery: Delivery) -> None:
        into.append(delivery.data)

    await bus.replay("T_REPLAY", "test.replay.>", 0.0, lambda d: keep(everything, d))
    await bus.replay("T_REPLAY", "test.replay.>", 0.0, lambda d: keep(latest, d), most=5)
    await until(lambda: len(everything) == 30 and len(latest) == 5)
    assert latest == [b"25", b"26", b"27", b"28", b"29"]
    await bus.client.jetstream().publish("test.replay.new", b"new")
    await until(lambda: latest[-1:] == [b"new"] and everything[-1:] == [b"new"])
    assert len(latest) == 6
    await bus.close()
