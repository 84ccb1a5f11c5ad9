"""Fixtures for integration tests: a NATS client connected to the session-wide server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client

from mesh.playground.natsserver import NatsServer


@pytest.fixture(scope="module")
def module_nats(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server of this module's own, for a mesh its tests share: nobody else's
    heartbeats, policy bucket or events. Never kill or restart it (take `fresh_nats`)."""
    server = NatsServer(nats_binary, store_dir=tmp_path_factory.mktemp("nats-module"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def presence_nats(
    nats_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatsServer]:
    """A nats-server with the mesh's and the system account, as `mesh up` runs it."""
    server = NatsServer(
        nats_binary, store_dir=tmp_path_factory.mktemp("nats-presence"), presence=True
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """URL of the session-wide nats-server."""
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A raw nats-py client on the session-wide server, closed after the test."""
    client = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=3)
    yield client
    await client.close()
