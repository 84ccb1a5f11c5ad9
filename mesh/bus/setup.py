"""What only the admin may create on a secured NATS: the event stream and the policy bucket."""

from __future__ import annotations

from mesh import subjects
from mesh.bus import events
from mesh.bus.core import NatsBus
from mesh.bus.kv import KvStore
from mesh.config import Settings


async def set_up(settings: Settings) -> None:
    """Create (or bring to these settings) MESH_EVENTS and the mesh_policies bucket."""
    bus = NatsBus(settings, name="mesh-nats-setup")
    try:
        await bus.start(wait=5.0)
        await events.set_up(bus, settings)
        await KvStore(bus, subjects.POLICY_BUCKET).open(history=subjects.POLICY_HISTORY)
    finally:
        await bus.close()
