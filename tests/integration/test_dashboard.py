"""The gateway's dashboard in a real browser: a real nats-server, a gateway and hello-1's agent
in process, hello-2's agent a real process (so that it can be SIGKILLed), Debian's headless
Chromium over the DevTools protocol.

The screenshot is kept under test-artifacts/ (ignored by git); the test prints its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import mesh_procs
import pytest
from aiohttp import web
from browser import Browser
from mesh_procs import Proc
from pydantic import SecretStr
from waiting import until

from agents import agent
from gateway import fleet_admin, gateway
from mesh import metrics as mesh_metrics
from mesh import subjects
from mesh.addresses import bind
from mesh.bus import NatsBus, events
from mesh.config import Settings
from mesh.membership.discovery import Discovery
from mesh.membership.view import Member
from mesh.messages import Event, encode
from mesh.metrics import Metrics, registry_for
from mesh.node import admin
from mesh.node.ports import free_port
from mesh.observe import board, traffic
from mesh.observe.feed import READER_BACKLOG, Feed
from mesh.playground.natsserver import NatsServer
from mesh.timing import PRESETS


def metrics_text(metrics: Metrics) -> str:
    return mesh_metrics.render(registry_for(metrics)).decode()


TOKEN = "dashboard-test-token-0123456789"
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Everything runs the `local` preset: a silent instance is down after 1.2 s.
LOCAL = PRESETS["local"]
DOWN_AFTER = LOCAL.interval * LOCAL.down_intervals
# A busy machine's delays on top of a detection or a leave: the gateway's expiry tick, the
# push to the page and Chromium's rendering, each held up by 2 shared cores.
BUSY = 2.0
# A killed instance sends nothing: the page shows it down once its silence is long enough.
KILL_SEEN_WITHIN = DOWN_AFTER + BUSY
LEAVE_SEEN_WITHIN = BUSY  # a leave is pushed at once


@dataclass
class Mesh:
    admin_port: int
    edge_port: int
    processes: dict[str, Proc] = field(default_factory=dict)
    stops: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[int]] = field(default_factory=dict)
    services: list[web.AppRunner] = field(default_factory=list)

    def start(self, name: str, run: object, stop: asyncio.Event) -> None:
        self.stops[name] = stop
        self.tasks[name] = asyncio.create_task(run)  # type: ignore[arg-type]

    async def stop(self, name: str, timeout: float = 5.0) -> None:
        self.stops[name].set()
        await asyncio.wait_for(self.tasks[name], timeout)


async def _service() -> tuple[web.AppRunner, int]:
    """A service that is healthy and answers every request."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _ready(port: int, timeout: float) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(headers=headers) as session:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway's admin port {port} not ready within {timeout} s")


@contextlib.asynccontextmanager
async def mesh(nats_url: str, workdir: Path) -> AsyncIterator[Mesh]:
    """hello-2's agent is a process, started first (its interpreter takes longest to start),
    the rest in process."""
    settings = s = Settings(
        nats_url=nats_url,
        preset="local",
        admin_token=SecretStr(TOKEN),
        gateway_listen=f"127.0.0.1:{free_port()}",
        gateway_admin=f"127.0.0.1:{free_port()}",
        health_interval=0.2,
    )
    processes = mesh_procs.Mesh(
        nats_url, workdir, env={"MESH_PRESET": "local", "MESH_HEALTH_INTERVAL": "0.2"}
    )
    admin_port, edge_port = (int(a.rsplit(":", 1)[1]) for a in (s.gateway_admin, s.gateway_listen))
    made = Mesh(admin_port, edge_port)
    try:
        runner, port = await _service()
        made.services.append(runner)
        made.processes["hello-2"] = processes.spawn(
            "hello-2",
            *("agent", "--service", "hello", "--port", str(port), "--instance-id", "hello-2"),
            *("--health-path", "/health", "--admin-port", "0", "--outbound", ""),
        )
        made.start("gateway", gateway.run(settings, stop := asyncio.Event()), stop)
        runner, port = await _service()
        made.services.append(runner)
        options = agent.AgentOptions(
            service="hello",
            port=port,
            host="127.0.0.1",
            health_path="/health",
            admin_port=0,
            instance_id="hello-1",
            outbound="",
        )
        made.start("hello-1", agent.run(settings, options, stop := asyncio.Event()), stop)
        await _ready(made.admin_port, timeout=10.0)
        yield made
    finally:
        processes.close()
        for name in made.stops:
            made.stops[name].set()
        await asyncio.wait(made.tasks.values(), timeout=15.0)
        for runner in made.services:
            await runner.cleanup()


async def _load(port: int, statuses: list[int], stop: asyncio.Event) -> None:
    """Requests to hello through the gateway, about 50 a second, until `stop` (600 at most)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            async with session.get(f"http://127.0.0.1:{port}/hello/") as answer:
                statuses.append(answer.status)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)
                return


SHOWN_STATES = """
window.shownStates = [document.querySelector("tr[data-instance=hello-2]").dataset.state];
new MutationObserver(() => {
    const state = document.querySelector("tr[data-instance=hello-2]")?.dataset.state ?? "none";
    if (window.shownStates.at(-1) !== state) window.shownStates.push(state);
}).observe(document.getElementById("services"), {childList: true, subtree: true});
"""


def _signal(service: str, name: str) -> str:
    """The figure the page shows for a service's signal."""
    selector = f"div.service[data-service={service}] [data-signal={name}] .value"
    return f"document.querySelector({selector!r})?.textContent"


async def test_the_dashboard_shows_the_mesh_live(
    module_nats: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    browser_starting = asyncio.create_task(Browser.launch(tmp_path / "chromium-profile"))
    async with contextlib.AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(mesh(module_nats.url, tmp_path))
        finally:
            browser = await browser_starting
            stack.push_async_callback(browser.close)
        page = await browser.page()
        requested, challenged = await page.answer_auth("operator", TOKEN)
        origin = f"http://127.0.0.1:{running.admin_port}"
        await page.send("Page.navigate", url=f"{origin}/")

        alive = 'document.querySelectorAll("tr[data-instance^=hello-][data-state=alive]")'
        killed = running.processes["hello-2"]
        try:
            await page.wait_for(f"{alive}.length === 2", "both hello instances alive", 10.0)
        except AssertionError as failed:
            raise AssertionError(f"{failed}; hello-2's agent: {killed.tail()}") from None
        assert f"{origin}/" in challenged, "the page was served without the admin token"

        # Golden signals from the load reports, live.
        statuses: list[int] = []
        stop_load = asyncio.Event()
        load = asyncio.create_task(_load(running.edge_port, statuses, stop_load))
        stack.push_async_callback(lambda: asyncio.wait_for(load, 5.0))
        stack.callback(stop_load.set)
        rate, success = _signal("hello", "rate"), _signal("hello", "success")
        await page.wait_for(
            f'parseFloat({rate}) > 0 && {success} === "100.0%"', "hello's request rate", 5.0
        )
        assert statuses
        assert set(statuses) == {200}

        # Every state hello-2's row is drawn in, in order: a poll could miss a short one.
        await page.evaluate(SHOWN_STATES)
        loop = asyncio.get_running_loop()
        killed.kill()  # SIGKILL: no leave, the mesh learns it from silence alone
        killed_at = loop.time()
        assert killed.returncode == -signal.SIGKILL
        await page.wait_for(
            'document.querySelector("tr[data-instance=hello-2]")?.dataset.state === "down"',
            "hello-2 down after its agent was killed",
            KILL_SEEN_WITHIN,
        )
        shown = await page.evaluate("window.shownStates")
        # The view skips suspect on purpose when its expiry check runs later than the
        # suspect phase lasts (0.6 s): a stalled CI machine may do that, nothing else may.
        assert shown in (["alive", "suspect", "down"], ["alive", "down"])
        for kind in (
            ("instance.suspect", "instance.down") if "suspect" in shown else ("instance.down",)
        ):
            await page.wait_for(
                f'document.querySelector("li[data-kind=\\"{kind}\\"][data-instance=hello-2]")',
                f"the {kind} event of hello-2",
                killed_at + KILL_SEEN_WITHIN - loop.time(),
            )
        assert await page.evaluate(f"{alive}.length") == 1

        # A graceful stop: the leave is pushed at once, and the page says so.
        await running.stop("hello-1")
        await page.wait_for(
            'document.querySelector("tr[data-instance=hello-1]")?.dataset.state === "left"',
            "hello-1 left",
            LEAVE_SEEN_WITHIN,
        )
        await page.wait_for(
            'document.querySelector("li[data-kind=\\"instance.left\\"][data-instance=hello-1]")',
            "the instance.left event of hello-1",
            LEAVE_SEEN_WITHIN,
        )

        ARTEFACTS.mkdir(exist_ok=True)
        shot = await page.screenshot(ARTEFACTS / "dashboard.png")
        with capsys.disabled():
            print(f"\ndashboard screenshot: {shot}")
        # Self-contained: the page asked its own origin for everything it showed.
        assert requested, "no request seen"
        assert all(url.startswith(f"{origin}/") for url in requested), requested


# --- the feed behind the page: bounded, never held up by a reader, ended on stop ---


@dataclass
class Served:
    feed: Feed
    bus: NatsBus
    port: int
    runner: web.AppRunner
    metrics: Metrics


@contextlib.asynccontextmanager
async def feed_served(
    nats_url: str, *, readers: int, sndbuf: int = 0, backlog: int = READER_BACKLOG
) -> AsyncIterator[Served]:
    """A feed on its own admin port (no token); `sndbuf` shrinks the server's socket
    buffers (accepted sockets inherit the listener's), so that a reader that does not
    read holds up its stream within a few frames."""
    settings = Settings(nats_url=nats_url, preset="local")
    bus = NatsBus(settings, name="dashboard-test")
    await bus.start(wait=5.0)
    await events.set_up(bus, settings)
    metrics = Metrics()
    discovery = Discovery(bus, settings.timing, node="gw-test", metrics=metrics, events=None)
    feed = Feed(
        bus,
        discovery,
        metrics,
        node="gw-test",
        readers=readers,
        every=settings.timing.interval,
        backlog=backlog,
    )
    await feed.start()
    sock = bind("127.0.0.1", 0)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    app = admin.build(
        registry=registry_for(metrics),
        view=lambda: discovery.view,
        health=lambda: (True, {}),
        dashboard=feed.stream,
    )
    runner = await admin.serve(app, sock, token=None)
    try:
        yield Served(feed, bus, sock.getsockname()[1], runner, metrics)
    finally:
        await feed.stop()
        await runner.cleanup()
        await bus.close()


async def _publish_events(bus: NatsBus, count: int, tag: str) -> None:
    for n in range(count):
        event = Event(id=f"{tag}-{n}", kind="instance.down", service="hello", instance=f"{tag}-{n}")
        await bus.publish(
            subjects.event(event.kind, event.service),
            encode(event),
            headers={"Nats-Msg-Id": event.id},
        )
    await bus.flush(5.0)


async def _frames_until(content: aiohttp.StreamReader, marker: bytes, timeout: float) -> bytes:
    """What a stream sent until `marker`; AssertionError if it did not come in time."""
    seen = b""
    async with asyncio.timeout(timeout):
        while marker not in seen:
            chunk = await content.readany()
            assert chunk, f"the stream ended before {marker!r}"
            seen += chunk
    return seen


async def test_a_reader_that_does_not_read_holds_up_neither_the_node_nor_other_readers(
    module_nats: NatsServer,
) -> None:
    async with feed_served(module_nats.url, readers=4, sndbuf=4096, backlog=16) as served:
        # A reader that asks, then never reads, through a small window.
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(stuck, ("127.0.0.1", served.port))
        await loop.sock_sendall(stuck, b"GET /mesh/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{served.port}/mesh/stream"
            async with session.get(url) as reader:
                await _frames_until(reader.content, b"event: board", 2.0)
                await until(lambda: served.feed.readers == 2, timeout=2.0)
                # Far more than its backlog and the buffers in its way (a few kB each).
                await _publish_events(served.bus, 400, "flood")
                async with session.get(f"http://127.0.0.1:{served.port}/healthz") as health:
                    assert health.status == 200
                await until(lambda: served.feed.dropped >= 200, timeout=3.0)
                # The other reader still gets what happens next, at once.
                await _publish_events(served.bus, 1, "after")
                await _frames_until(reader.content, b'"after-0"', 2.0)
                assert served.feed.readers == 2  # the stuck one is still there, stuck
        text = metrics_text(served.metrics)
        assert f"mesh_dashboard_dropped_events_total {float(served.feed.dropped)}" in text
        stuck.close()


async def _board_after(content: aiohttp.StreamReader, wall: float, timeout: float) -> None:
    """Read until a board built after `wall` (older ones may wait in the buffers)."""
    seen = b""
    async with asyncio.timeout(timeout):
        while True:
            chunk = await content.readany()
            assert chunk, "the stream ended"
            seen += chunk
            *frames, seen = seen.split(b"\n\n")
            boards = [f.split(b"data: ", 1)[1] for f in frames if f.startswith(b"event: board\n")]
            if any(json.loads(data)["at"] > wall for data in boards):
                return


async def test_a_node_nobody_watches_hears_no_events_and_a_reader_gets_the_latest(
    module_nats: NatsServer,
) -> None:
    """At 1,000 nodes a policy apply is 1,000 acknowledgements: a node pays for folding
    the mesh's events only once someone reads its dashboard, and then sees the latest
    stored ones at once (the last RECENT_EVENTS, not an hour of them)."""
    async with feed_served(module_nats.url, readers=2) as served:
        await _publish_events(served.bus, 60, "unwatched")
        await asyncio.sleep(0.3)
        assert served.feed.readers == 0
        assert not served.feed._recent  # nothing heard, nothing kept
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{served.port}/mesh/stream"
            async with session.get(url) as reader:
                seen = await _frames_until(reader.content, b'"unwatched-59"', 3.0)
        assert b'"unwatched-10"' in seen  # the latest 50 of 60, and no older one
        assert b'"unwatched-9"' not in seen


async def test_a_board_that_fails_to_build_is_counted_logged_and_the_pushes_go_on(
    module_nats: NatsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What one absurd heartbeat did before its figures were bounded: the pusher died for
    good, and the node's stop raised its exception."""
    failed_at: list[float] = []
    armed = asyncio.Event()
    built = board.board

    def once_failing(
        node: str, members: Iterable[Member], loads: traffic.Loads, *, wall: float
    ) -> board.Board:
        if armed.is_set() and not failed_at:
            failed_at.append(time.time())
            raise OverflowError("int too large to convert to float")
        return built(node, members, loads, wall=wall)

    monkeypatch.setattr(board, "board", once_failing)
    async with (
        feed_served(module_nats.url, readers=1) as served,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"http://127.0.0.1:{served.port}/mesh/stream") as reader:
            await _frames_until(reader.content, b"event: board", 2.0)
            armed.set()
            await until(lambda: served.feed.board_failures == 1, timeout=2.0)
            await _board_after(reader.content, failed_at[0], timeout=2.0)
        assert "mesh_dashboard_board_failures_total 1.0" in metrics_text(served.metrics)
    # The stop above (feed_served's) raised nothing; the failure was logged once.
    [logged] = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert logged.exc_info is not None
    assert "int too large" in str(logged.exc_info[1])


async def test_streams_are_bounded_and_end_cleanly_when_the_node_stops(
    module_nats: NatsServer,
) -> None:
    async with (
        feed_served(module_nats.url, readers=1) as served,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{served.port}/mesh/stream"
        async with session.get(url) as first:
            assert first.headers["Content-Type"] == "text/event-stream"
            await _frames_until(first.content, b"event: board", 2.0)
            async with session.get(url) as second:
                assert second.status == 503
                assert "MESH_DASHBOARD_READERS" in (await second.json())["error"]
            assert served.feed.refused == 1
            started = asyncio.get_running_loop().time()
            await served.feed.stop()
            # The stream ends as a stream should (its last chunk), not cut.
            async with asyncio.timeout(2.0):
                rest = await first.content.read()
            assert first.content.at_eof(), rest
            async with session.get(url) as late:  # asked for while the node stops
                assert late.status == 503
        await served.runner.cleanup()
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_gateway_with_workers_relays_a_workers_stream(module_nats: NatsServer) -> None:
    async with (
        feed_served(module_nats.url, readers=4) as worker,
        aiohttp.ClientSession() as session,
    ):
        fleet = fleet_admin.build(
            [free_port(), worker.port], session, registry_for(Metrics()), readers=1
        )
        sock = bind("127.0.0.1", 0)
        runner = await admin.serve(fleet, sock, token=None)
        try:
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            async with session.get(f"{base}/") as page:
                assert page.status == 200
                assert "<title>natsmesh</title>" in await page.text()
            # Worker 0 does not answer (its port is closed): worker 1's view it is.
            async with session.get(f"{base}/mesh/stream") as relayed:
                assert relayed.headers["Content-Type"] == "text/event-stream"
                seen = await _frames_until(relayed.content, b'"node":"gw-test"', 2.0)
                assert b"event: board" in seen
                async with session.get(f"{base}/mesh/stream") as second:
                    assert second.status == 503
                await _publish_events(worker.bus, 1, "relayed")
                await _frames_until(relayed.content, b'"relayed-0"', 2.0)
                await worker.feed.stop()  # the worker stops: the relay ends too
                async with asyncio.timeout(2.0):
                    await relayed.content.read()
        finally:
            await runner.cleanup()
