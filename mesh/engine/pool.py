"""Keep-alive connection pools, one per instance address: reuse, limits, idle expiry."""

from __future__ import annotations

import asyncio
import socket
from collections import deque

from mesh.engine.outbox import Outbox
from mesh.engine.upstream import UpstreamConnection
from mesh.errors import UpstreamConnectFailure, UpstreamRefused, UpstreamTimeout
from mesh.tls import PeerCheck, peer_uris

Key = tuple[str, int]


class Pools:
    """Idle connections by instance address; the most recently used is reused first."""

    def __init__(self, outbox: Outbox, *, max_idle: int, idle_timeout: float) -> None:
        self.outbox = outbox
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[Key, deque[UpstreamConnection]] = {}
        self.opened = 0  # connections ever opened, for metrics and tests

    def take(self, key: Key) -> UpstreamConnection | None:
        """An idle connection to `key` that is still open, or None."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(
        self, key: Key, timeout: float, tls: PeerCheck | None = None
    ) -> UpstreamConnection:
        """A new connection, over mTLS to a peer showing `tls.identity` when given; raises
        UpstreamTimeout or UpstreamConnectFailure."""
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(key, self.outbox),
                    key[0],
                    key[1],
                    ssl=tls.context if tls is not None else None,
                ),
                timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout("connect timed out") from None
        except ConnectionRefusedError:
            raise UpstreamRefused("connect failed: connection refused") from None
        except OSError as exc:
            raise UpstreamConnectFailure(f"connect failed: {exc.strerror or exc}") from None
        if tls is not None:
            self._check_identity(conn, tls.identity)
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return conn

    @staticmethod
    def _check_identity(conn: UpstreamConnection, identity: str) -> None:
        """The CA vouches for the certificate; that it is the callee's is checked here."""
        shown = peer_uris(conn.transport.get_extra_info("peercert") if conn.transport else None)
        if identity not in shown:
            conn.abort()
            raise UpstreamConnectFailure(
                f"connect failed: the instance is {', '.join(shown) or 'nobody'}, not {identity}"
            )

    def give_back(self, conn: UpstreamConnection, now: float) -> None:
        """Keep `conn` for reuse, or close it if the pool for its address is full."""
        if conn.closed:
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= self.max_idle:
            conn.close()
            return
        # Reading stays on while idle, so an upstream's close is seen (and the connection
        # dropped) before a request is written to it.
        conn.resume_reading()
        conn.idle_since = now
        idle.append(conn)

    def expire(self, now: float) -> int:
        """Close connections idle longer than the timeout; returns how many."""
        closed = 0
        for key in list(self._idle):
            idle = self._idle[key]
            # Oldest first: they sit at the left end.
            while idle and (idle[0].closed or now - idle[0].idle_since >= self.idle_timeout):
                conn = idle.popleft()
                if not conn.closed:
                    conn.close()
                    closed += 1
            if not idle:
                del self._idle[key]
        return closed

    def forget(self, key: Key) -> None:
        """Close every idle connection to an instance that left the view."""
        for conn in self._idle.pop(key, ()):
            conn.close()

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        for key in list(self._idle):
            self.forget(key)
