"""Bodies streamed both ways with back-pressure: 200 MB through an engine process, RSS flat."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httptools
import pytest

MB = 1 << 20
TOTAL = 200 * MB
BLOCK = bytes(MB)
RSS_BUDGET = 50 * MB
ENGINE = Path(__file__).with_name("engine_proc.py")

# The engine runs in its own process (on uvloop): this side's loop makes no difference.
pytestmark = pytest.mark.asyncio(loop_factories=["uvloop"])


class EngineProcess:
    """An engine in its own process (see engine_proc.py), for an honest RSS reading."""

    def __init__(self, upstream_port: int) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, str(ENGINE), str(upstream_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ENGINE.parent,
        )
        assert self.popen.stdout is not None
        self.port = int(self.popen.stdout.readline())
        self.peak = 0
        self._watcher: asyncio.Task[None] | None = None

    def rss(self) -> int:
        """Resident set size of the engine process, from /proc (bytes)."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def watch(self) -> int:
        """Track the peak RSS from now on (until stop); returns the baseline."""
        self.peak = baseline = self.rss()
        self._watcher = asyncio.create_task(self._watch())
        return baseline

    async def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class BodyCounter:
    """httptools callbacks that count body bytes instead of keeping them."""

    def __init__(self, request: bool) -> None:
        self.parser = (
            httptools.HttpRequestParser(self) if request else httptools.HttpResponseParser(self)
        )
        self.count = 0
        self.done = False
        self.status = 0
        self.chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        if isinstance(self.parser, httptools.HttpResponseParser):
            self.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        self.count += len(chunk)

    def on_message_complete(self) -> None:
        self.done = True

    async def read(self, reader: asyncio.StreamReader, limit: int | None = None) -> None:
        """Feed from `reader` until the message is done (or `limit` bytes were read)."""
        taken = 0
        while not self.done and (limit is None or taken < limit):
            data = await reader.read(MB if limit is None else min(MB, limit - taken))
            if not data:
                raise AssertionError(f"closed after {self.count} body bytes")
            taken += len(data)
            self.parser.feed_data(data)


async def write_body(writer: asyncio.StreamWriter, chunked: bool, progress: list[int]) -> None:
    for _ in range(TOTAL // MB):
        writer.write(b"100000\r\n%s\r\n" % BLOCK if chunked else BLOCK)
        progress[0] += MB
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def engine_for() -> AsyncIterator[Callable[[Serve], Awaitable[EngineProcess]]]:
    """`await engine_for(serve)`: an upstream in this process, an engine in its own."""
    servers: list[asyncio.Server] = []
    engines: list[EngineProcess] = []

    async def make(serve: Serve) -> EngineProcess:
        async def warm_or_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /warm "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    head = await reader.readuntil(b"\r\n\r\n")
                await serve(reader, _Replay(head, writer))
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(warm_or_serve, "127.0.0.1", 0)
        servers.append(server)
        engine = EngineProcess(server.sockets[0].getsockname()[1])
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()
    for server in servers:
        server.close()


class _Replay:
    """The upstream's writer, plus the request head it already read."""

    def __init__(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        self.head = head
        self.writer = writer


async def warmed_client(engine: EngineProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection that made one small request; the engine's baseline RSS is set."""
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    writer.write(b"GET /warm HTTP/1.1\r\nHost: svc\r\n\r\n")
    counter = BodyCounter(request=False)
    await counter.read(reader)
    assert counter.status == 200
    await asyncio.sleep(0.1)
    return reader, writer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_200mb_download_streams_with_flat_memory(
    chunked: bool, engine_for: Callable[[Serve], Awaitable[EngineProcess]]
) -> None:
    async def download(reader: asyncio.StreamReader, upstream: _Replay) -> None:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % TOTAL
        upstream.writer.write(b"HTTP/1.1 200 OK\r\n%s\r\n\r\n" % framing)
        await write_body(upstream.writer, chunked, [0])

    engine = await engine_for(download)
    reader, writer = await warmed_client(engine)
    baseline = engine.watch()
    writer.write(b"GET /big HTTP/1.1\r\nHost: svc\r\n\r\n")
    counter = BodyCounter(request=False)
    await asyncio.wait_for(counter.read(reader), 30)
    assert (counter.status, counter.count, counter.chunked) == (200, TOTAL, chunked)
    growth = engine.peak - baseline
    print(f"download ({'chunked' if chunked else 'content-length'}): RSS +{growth / MB:.1f} MB")
    assert growth < RSS_BUDGET
    writer.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_200mb_upload_streams_with_flat_memory(
    chunked: bool, engine_for: Callable[[Serve], Awaitable[EngineProcess]]
) -> None:
    async def upload(reader: asyncio.StreamReader, upstream: _Replay) -> None:
        counter = BodyCounter(request=True)
        counter.parser.feed_data(upstream.head)
        await counter.read(reader)
        body = b"%d" % counter.count
        upstream.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await upstream.writer.drain()

    engine = await engine_for(upload)
    reader, writer = await warmed_client(engine)
    baseline = engine.watch()
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % TOTAL
    writer.write(b"POST /big HTTP/1.1\r\nHost: svc\r\n%s\r\n\r\n" % framing)
    await asyncio.wait_for(write_body(writer, chunked, [0]), 30)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    body = await reader.readexactly(len(b"%d" % TOTAL))
    assert (head.split(b"\r\n")[0], body) == (b"HTTP/1.1 200 OK", b"%d" % TOTAL)
    growth = engine.peak - baseline
    print(f"upload ({'chunked' if chunked else 'content-length'}): RSS +{growth / MB:.1f} MB")
    assert growth < RSS_BUDGET
    writer.close()


async def stalled(progress: list[int], quiet: float = 0.3, within: float = 10.0) -> None:
    """Wait until `progress[0]` stops moving for `quiet` seconds (bounded by `within`)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    last, since = -1, loop.time()
    while loop.time() < end:
        if progress[0] != last:
            last, since = progress[0], loop.time()
        elif loop.time() - since >= quiet:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the writer never stalled ({progress[0] // MB} MB written)")


async def test_a_slow_client_pauses_the_upstream_instead_of_filling_memory(
    engine_for: Callable[[Serve], Awaitable[EngineProcess]],
) -> None:
    written = [0]

    async def download(reader: asyncio.StreamReader, upstream: _Replay) -> None:
        upstream.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL)
        await write_body(upstream.writer, False, written)

    engine = await engine_for(download)
    reader, writer = await warmed_client(engine)
    baseline = engine.watch()
    writer.write(b"GET /big HTTP/1.1\r\nHost: svc\r\n\r\n")
    counter = BodyCounter(request=False)
    await counter.read(reader, limit=MB)  # then the client stops reading
    await stalled(written)
    # What is in flight sits in the kernel's socket buffers, not in the engine.
    growth = engine.peak - baseline
    print(f"slow client: upstream stalled at {written[0] // MB} MB, RSS +{growth / MB:.1f} MB")
    assert written[0] < TOTAL
    assert growth < RSS_BUDGET
    await asyncio.wait_for(counter.read(reader), 30)
    assert counter.count == TOTAL
    writer.close()


async def test_a_slow_upstream_pauses_the_client_instead_of_filling_memory(
    engine_for: Callable[[Serve], Awaitable[EngineProcess]],
) -> None:
    resume = asyncio.Event()

    async def upload(reader: asyncio.StreamReader, upstream: _Replay) -> None:
        await resume.wait()  # not reading yet
        counter = BodyCounter(request=True)
        counter.parser.feed_data(upstream.head)
        await counter.read(reader)
        upstream.writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await upstream.writer.drain()

    engine = await engine_for(upload)
    reader, writer = await warmed_client(engine)
    baseline = engine.watch()
    sent = [0]
    writer.write(b"POST /big HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % TOTAL)
    sending = asyncio.create_task(write_body(writer, False, sent))
    await stalled(sent)
    growth = engine.peak - baseline
    print(f"slow upstream: client stalled at {sent[0] // MB} MB, RSS +{growth / MB:.1f} MB")
    assert sent[0] < TOTAL
    assert growth < RSS_BUDGET
    resume.set()
    await asyncio.wait_for(sending, 30)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 204")
    writer.close()
