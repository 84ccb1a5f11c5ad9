"""Raw HTTP/1.1 for tests against a gateway process: a threaded recording upstream, a client.

The asyncio pair in wire.py drives an engine in the test's own loop; a gateway process
(either data plane) is reached from threads instead, so that one module-wide upstream
serves every test whatever its event loop.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading

from wire import WAIT, Message, _Collector, echo_body, response

# Targets the upstream treats specially (after whatever the gateway stripped or rewrote).
HANG = "/hang"  # never answered: the gateway's timeout answers
HOP_BY_HOP = "/hop-by-hop"  # answered with hop-by-hop headers the gateway must drop
NEVER_ANSWERED_FOR = 5.0  # seconds a HANG request holds its connection, at most


class Upstream(socketserver.ThreadingTCPServer):
    """Answers each request with its echo (wire.echo_body), as parsed on arrival, without a
    Date; records every byte received. `label` and `port` make it a mesh_procs.Served."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, label: str) -> None:
        super().__init__(("127.0.0.1", 0), _Connection)
        self.label, self.port = label, self.server_address[1]
        self._received: list[bytes] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        # Polled every 50 ms: close() waits for a poll (0.5 s by default, twice a module).
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def record(self, data: bytes) -> None:
        with self._lock:
            self._received.append(data)

    def saw(self, marker: bytes) -> bool:
        """Whether `marker` arrived here, in any connection (tests mark their requests)."""
        with self._lock:
            return marker in b"".join(self._received)

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)

    def close(self) -> None:
        """Stop listening and end every connection: from now on connections are refused."""
        self.shutdown()
        self.server_close()
        with self._lock:
            for sock in self._connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Connection(socketserver.BaseRequestHandler):
    server: Upstream

    def handle(self) -> None:
        parsed = _Collector(request=True)
        self.server.opened(self.request)
        self.request.settimeout(30)
        while data := _recv(self.request):
            self.server.record(data)
            try:
                parsed.feed(data)
            except Exception:  # httptools refused it: a gateway forwarded a malformed request
                return
            while parsed.done:
                if not self._answer(parsed.done.popleft()):
                    return

    def _answer(self, request: Message) -> bool:
        target = request.target.decode("latin-1")
        if HANG in target:
            with contextlib.suppress(OSError):
                self.request.settimeout(NEVER_ANSWERED_FOR)
                while _recv(self.request):
                    pass
            return False
        headers = {"Content-Type": "application/json"}
        if HOP_BY_HOP in target:
            headers |= {
                "Connection": "keep-alive, X-Internal",
                "Keep-Alive": "timeout=5",
                "X-Internal": "secret",
                "Proxy-Authenticate": "Basic",
                "X-Public": "yes",
            }
        self.request.sendall(response(200, echo_body(request), headers))
        return True


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


class Client:
    """One connection to a gateway: exact bytes out, parsed responses in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.parsed = _Collector(request=False)
        self.eof = False

    def exchange(self, raw: bytes) -> Message:
        self.sock.sendall(raw)
        return self.response()

    def response(self) -> Message:
        """The next response; the partial one (or an empty one) if the gateway closes first."""
        while not self.parsed.done:
            try:
                more = self._read()
            except TimeoutError:
                raise AssertionError(f"no response within {WAIT} s: the gateway hung") from None
            if not more:
                partial = self.parsed.current or Message()
                self.parsed.current = None
                return partial
        return self.parsed.done.popleft()

    def closed(self) -> bool:
        """True once the gateway closes the connection (within WAIT)."""
        try:
            while self._read():
                pass
        except TimeoutError:
            return False
        return True

    def _read(self) -> bool:
        """False at the end of the stream; TimeoutError when nothing comes within WAIT."""
        try:
            data = b"" if self.eof else self.sock.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError:  # a reset: as closed as it gets
            data = b""
        self.eof = not data
        if data:
            self.parsed.feed(data)
        return bool(data)

    def close(self) -> None:
        self.sock.close()


def exchange(port: int, raw: bytes) -> Message:
    """`raw` sent on a connection of its own; the first response."""
    client = Client(port)
    try:
        return client.exchange(raw)
    finally:
        client.close()
