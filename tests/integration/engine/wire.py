"""Raw HTTP/1.1 on both sides of the engine: a scripted upstream and a byte-exact client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

WAIT = 5.0  # seconds any single read in a test may take before it counts as a hang


@dataclass
class Message:
    """One parsed request or response; `complete` is False if the peer stopped mid-way."""

    method: bytes = b""
    target: bytes = b""
    status: int = 0
    version: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == key]

    def names(self) -> set[str]:
        return {n.decode("latin-1").lower() for n, _ in self.headers}

    def json(self) -> Any:
        return json.loads(bytes(self.body))


class _Collector:
    """httptools callbacks that turn a byte stream into Messages (1xx included)."""

    def __init__(self, request: bool) -> None:
        self.parser: Any = (
            httptools.HttpRequestParser(self) if request else httptools.HttpResponseParser(self)
        )
        self.request = request
        self.done: deque[Message] = deque()
        self.current: Message | None = None
        self.in_body = False
        self.upgraded = b""  # bytes after an upgrade (tunnel data)
        self.is_upgraded = False

    def feed(self, data: bytes) -> None:
        if self.is_upgraded:
            self.upgraded += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.is_upgraded = True
            self.upgraded += data[upgrade.args[0] :]

    def on_message_begin(self) -> None:
        self.current = Message()
        self.in_body = False

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        (self.current.trailers if self.in_body else self.current.headers).append((name, value))

    def on_headers_complete(self) -> None:
        message = self.current
        assert message is not None
        self.in_body = True
        message.version = self.parser.get_http_version()
        if self.request:
            message.method = self.parser.get_method()
        else:
            message.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        assert self.current is not None
        self.current.body += chunk

    def on_message_complete(self) -> None:
        message = self.current
        assert message is not None
        message.complete = True
        self.done.append(message)
        self.current = None


class Peer:
    """A stream with everything it received recorded and parsed as it arrives."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, request: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.eof = False
        self._parsed = _Collector(request)

    async def _read_more(self, timeout: float) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 18), timeout)
        except TimeoutError:
            raise  # an OSError too, but not the peer's doing
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.received += data
        self._parsed.feed(data)
        return True

    async def message(self, timeout: float = WAIT) -> Message:
        """The next complete message; if the peer closes first, the partial one (or empty).

        Raises TimeoutError when neither happens within `timeout`: the engine hung.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self._parsed.done:
            if self.eof or not await self._read_more(max(0.01, end - loop.time())):
                partial = self._parsed.current or Message()
                self._parsed.current = None
                return partial
        return self._parsed.done.popleft()

    async def tunnel_bytes(self, count: int, timeout: float = WAIT) -> bytes:
        """Bytes after an upgrade, once `count` of them arrived (or the peer closed)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(self._parsed.upgraded) < count and not self.eof:
            await self._read_more(max(0.01, end - loop.time()))
        data, self._parsed.upgraded = self._parsed.upgraded, b""
        return data

    async def closed(self, timeout: float = WAIT) -> bool:
        """True once the peer closes (all it sent before is read and parsed)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.eof and loop.time() < end:
            with contextlib.suppress(TimeoutError):
                await self._read_more(max(0.01, end - loop.time()))
        return self.eof

    async def silent(self, seconds: float = 0.2) -> bool:
        """True if nothing arrives (and the peer does not close) for `seconds`."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 16), seconds)
        except TimeoutError:
            return True
        except (ConnectionError, OSError):  # a reset: as closed as it gets
            data = b""
        self.received += data
        self._parsed.feed(data)
        self.eof = not data
        return False

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[Peer], Awaitable[None]]


class Upstream:
    """A scripted raw HTTP server on 127.0.0.1 that records every byte and every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, request=True)
        self.peers.append(peer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(peer)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the test is over (or the engine cut the connection): nothing to report
        finally:
            self._tasks.discard(task)
            writer.close()

    @property
    def received(self) -> bytes:
        return b"".join(bytes(p.received) for p in self.peers)

    def requests(self, *peers: int) -> list[Message]:
        """Every request the upstream's own parser found in what it received (on `peers`)."""
        found: list[Message] = []
        for peer in [self.peers[i] for i in peers] if peers else self.peers:
            collector = _Collector(request=True)
            with contextlib.suppress(httptools.HttpParserError):
                collector.feed(bytes(peer.received))
            found.extend(collector.done)
        return found

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def response(
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    reason: str = "OK",
    version: str = "1.1",
) -> bytes:
    """A response with Content-Length (unless `headers` frames it otherwise)."""
    lines = [f"HTTP/{version} {status} {reason}\r\n"]
    given = {k.lower() for k in (headers or {})}
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}\r\n")
    if "transfer-encoding" not in given and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}\r\n")
    return ("".join(lines) + "\r\n").encode("latin-1") + body


def echo_body(request: Message) -> bytes:
    """What the echo upstream answers: the request as it arrived, as JSON."""
    return json.dumps(
        {
            "method": request.method.decode(),
            "target": request.target.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers],
            "body": bytes(request.body).decode("latin-1"),
            "trailers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.trailers],
        }
    ).encode()


def echoing(delay: float = 0.0) -> Handler:
    """A keep-alive upstream that answers each request with its echo, `delay` s later."""

    async def handler(peer: Peer) -> None:
        while True:
            request = await peer.message(timeout=60)
            if not request.complete:
                return
            if delay:
                await asyncio.sleep(delay)
            peer.send(response(200, echo_body(request), {"Content-Type": "application/json"}))
            await peer.drain()

    return handler


echo = echoing()


def answering(*raw: bytes, close: bool = False) -> Handler:
    """An upstream that answers each request with the next of `raw` (then closes if asked)."""

    async def handler(peer: Peer) -> None:
        for data in raw:
            if not (await peer.message()).complete:
                return
            peer.send(data)
            await peer.drain()
        if close:
            peer.close()
        else:
            await peer.closed(30)

    return handler


class Client:
    """A raw client connection to the engine: exact bytes out, parsed responses in."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(Peer(reader, writer, request=False))

    def send(self, data: bytes) -> None:
        self.peer.send(data)

    async def response(self, timeout: float = WAIT) -> Message:
        return await self.peer.message(timeout)

    async def exchange(self, data: bytes, timeout: float = WAIT) -> Message:
        self.send(data)
        return await self.response(timeout)

    async def head_response(self, timeout: float = WAIT) -> Message:
        """The response to a HEAD: a parser would wait for the body it announces."""
        peer = self.peer
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        raw = bytearray()
        while b"\r\n\r\n" not in raw:
            data = await asyncio.wait_for(peer.reader.read(1 << 16), end - loop.time())
            if not data:
                peer.eof = True
                break
            peer.received += data
            raw += data
        head, _, rest = bytes(raw).partition(b"\r\n\r\n")
        collector = _Collector(request=False)
        collector.feed(head + b"\r\n\r\n")
        message = collector.current or (collector.done[0] if collector.done else Message())
        message.complete = True
        peer._parsed = _Collector(request=False)  # what follows is the next response
        peer._parsed.feed(rest)
        return message

    async def closed(self, timeout: float = WAIT) -> bool:
        return await self.peer.closed(timeout)

    async def silent(self, seconds: float = 0.2) -> bool:
        return await self.peer.silent(seconds)

    def close(self) -> None:
        self.peer.close()


def get(target: str = "/", host: str = "svc", extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {target} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


def post(headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    return f"POST /p HTTP/{version}\r\nHost: svc\r\n{headers}\r\n".encode("latin-1") + body


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# (client's headers) -> (x-forwarded-for, -proto, -host) the upstream sees
FORWARDING = {
    "created": ("", ("127.0.0.1", "http", "svc")),
    "appended": (
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 10.0.0.1\r\n",
        ("203.0.113.7, 10.0.0.1, 127.0.0.1", "http", "svc"),
    ),
    "proto-and-host-kept": (
        "X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n",
        ("127.0.0.1", "https", "shop.example"),
    ),
}

# A complete request: found in an upstream's bytes only if a body was mis-framed.
SMUGGLED = get("/smuggled")
