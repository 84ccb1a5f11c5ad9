"""What only the admin may create on a secured NATS: the event stream and the policy bucket."""

from __future__ import annotations

import asyncio
import json

from mesh import clock, subjects
from mesh.bus import events
from mesh.bus.core import NatsBus
from mesh.bus.kv import KvStore
from mesh.config import Settings
from mesh.errors import BusError, BusRefused

# A JetStream call that no leader answers waits this long: a cluster elects its metadata
# leader within a second or so of its nodes meeting, and nats-py's own wait is 5 s.
_PROBE = 0.5
_RETRY = 0.1  # seconds between attempts while a cluster is not ready


async def set_up(settings: Settings, *, wait: float = 0.0) -> None:
    """Create (or bring to these settings) MESH_EVENTS and the mesh_policies bucket.

    With `wait`, keep trying for that many seconds while NATS cannot yet: a new cluster
    has no JetStream leader at first, then too few peers known to place 3 replicas.
    """
    bus = NatsBus(settings, name="mesh-nats-setup")
    try:
        await bus.start(wait=5.0)
        deadline = clock.monotonic() + wait
        while True:
            try:
                await jetstream_answers(bus)
                await events.set_up(bus, settings)
                await KvStore(bus, subjects.POLICY_BUCKET).open(history=subjects.POLICY_HISTORY)
                return
            except BusRefused:
                raise
            except BusError:
                if clock.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_RETRY)
    finally:
        await bus.close()


async def jetstream_answers(bus: NatsBus) -> None:
    """Return once JetStream answers an account request (a cluster: it has a leader)."""
    try:
        answer = json.loads(await bus.request("$JS.API.INFO", b"", _PROBE))
    except ValueError:
        raise BusError("JetStream's answer is not JSON") from None
    except BusError as exc:
        raise BusError(f"JetStream does not answer (no leader yet?): {exc}") from None
    if "error" in answer:
        raise BusError(f"JetStream: {answer['error'].get('description', answer['error'])}")
