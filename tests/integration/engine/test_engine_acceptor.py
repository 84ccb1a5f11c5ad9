"""Workers sharing one listening socket each take a share of a burst of new clients."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

from waiting import until

from mesh import addresses
from mesh.engine.acceptor import Acceptor

BURST = 40


class Counted(asyncio.Protocol):
    def __init__(self, taken: Counter[str], name: str) -> None:
        self.taken, self.name = taken, name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.taken[self.name] += 1


async def test_a_burst_waiting_in_the_backlog_is_shared_between_two_acceptors() -> None:
    loop = asyncio.get_running_loop()
    shared = addresses.bind("127.0.0.1", 0)
    shared.listen(BURST)
    port = shared.getsockname()[1]
    # Every client is queued before anyone accepts: the worst case, a burst at once.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(BURST)]
    taken: Counter[str] = Counter()
    acceptors = [
        Acceptor(loop, lambda name=name: Counted(taken, name), sock, backlog=BURST)  # type: ignore[misc]
        for name, sock in (("a", shared), ("b", shared.dup()))
    ]
    try:
        for acceptor in acceptors:
            await acceptor.start_serving()
        await until(lambda: sum(taken.values()) == BURST, timeout=5)
        # An event loop's own server takes every pending client when it wakes.
        assert min(taken["a"], taken["b"]) >= BURST // 4, taken
    finally:
        for acceptor in acceptors:
            acceptor.close()
        for client in clients:
            client.close()


async def test_a_closed_acceptor_takes_no_more_clients() -> None:
    loop = asyncio.get_running_loop()
    sock = addresses.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    taken: Counter[str] = Counter()
    acceptor = Acceptor(loop, lambda: Counted(taken, "a"), sock, backlog=8)
    await acceptor.start_serving()
    assert acceptor.is_serving()
    first = socket.create_connection(("127.0.0.1", port))
    await until(lambda: taken["a"] == 1, timeout=5)
    acceptor.close()
    assert not acceptor.is_serving() or acceptor.sockets[0].fileno() == -1
    try:
        refused = False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            refused = True
        assert refused
    finally:
        first.close()
