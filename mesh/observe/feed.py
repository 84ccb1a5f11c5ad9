"""The dashboard's live feed: the board and the mesh's events, pushed to SSE readers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

import msgspec
from aiohttp import web

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Delivery, NatsBus, until_done
from mesh.clock import Clock
from mesh.errors import InvalidMessage
from mesh.membership.discovery import Discovery
from mesh.membership.view import View
from mesh.messages import Event, decode
from mesh.metrics import Metrics
from mesh.observe import board
from mesh.observe.backlog import Backlog
from mesh.observe.loads import Loads
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Events a reader may fall behind by; past that, new ones are dropped for it (and
# counted), so a slow browser never holds up the node or the other readers. A burst of
# failures across a large mesh fits.
READER_BACKLOG = 1024
RECENT_EVENTS = 50  # what a new reader is shown at once
# At start the latest events come from the stored stream, as far back as this.
REPLAY_SECONDS = 3600.0
# Every observer of a happening publishes it under the same id: one of each is shown.
SEEN_IDS = 2048
# How soon a browser reconnects after the stream ends (a restarting node), milliseconds.
RETRY_MS = 1000
# A board that cannot be built fails again at every push: its traceback is logged at most
# this often (seconds), every failure counted.
FAILURE_LOG_EVERY = 60.0


class Feed:
    """One per node: fed from NATS (the node's view and the event stream), read over SSE.

    The board is pushed at once when the view changes, and `every` seconds (a heartbeat
    interval: the load reports come that often). The node hears load reports and events
    from its first reader on: a node nobody watches never receives the fleet's traffic
    figures or the mesh's events.
    """

    def __init__(
        self,
        bus: NatsBus,
        discovery: Discovery,
        metrics: Metrics,
        *,
        node: str,
        readers: int,
        every: float,
        backlog: int = READER_BACKLOG,
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self._discovery = discovery
        self._node = node
        self._limit = readers
        self._backlog = backlog
        self._every = every
        self._clock = clock
        self._readers: set[Backlog] = set()
        self._loads = Loads(metrics.invalid_message)
        self._recent: collections.deque[bytes] = collections.deque(maxlen=RECENT_EVENTS)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._due = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._replay: asyncio.Task[None] | None = None
        self._since = 0.0  # events stored before this (wall seconds) are not shown
        self._stopped = False
        self._failure_logged_at: float | None = None
        self.dropped = 0
        self.refused = 0
        self.board_failures = 0
        metrics.gauge(
            "mesh_dashboard_readers",
            "Dashboard live streams open.",
            (),
            lambda: [((), float(self.readers))],
        )
        metrics.counter(
            "mesh_dashboard_dropped_events",
            "Dashboard events dropped for readers too slow to take them.",
            (),
            lambda: [((), float(self.dropped))],
        )
        metrics.counter(
            "mesh_dashboard_refused",
            "Dashboard streams refused: MESH_DASHBOARD_READERS already open.",
            (),
            lambda: [((), float(self.refused))],
        )
        metrics.counter(
            "mesh_dashboard_board_failures",
            "Dashboard boards that could not be built (readers keep the last one; logged).",
            (),
            lambda: [((), float(self.board_failures))],
        )

    async def start(self) -> None:
        self._discovery.on_change(self._view_changed)
        self._pusher = asyncio.create_task(self._push_forever(), name="dashboard-feed")

    def _hear_events(self) -> None:
        """From the first reader on: the stored stream's latest, then each new event as it
        is stored (one copy of each happening, however many nodes observed it). A node
        nobody watches never hears the mesh's events: at 1,000 nodes a policy apply alone
        is 1,000 acknowledgements, a third of a core's work for every gateway."""
        if self._replay is not None:
            return
        self._since = self._clock.wall() - REPLAY_SECONDS
        self._replay = asyncio.create_task(
            until_done(
                self._bus,
                "the dashboard's event replay",
                lambda: self._bus.replay(
                    subjects.EVENTS_STREAM,
                    subjects.EVENTS,
                    self._since,
                    self._on_event,
                    most=RECENT_EVENTS,
                ),
            ),
            name="dashboard-events",
        )

    @property
    def readers(self) -> int:
        return len(self._readers)

    async def stop(self) -> None:
        """End every stream cleanly (the browser reconnects to whoever serves next)."""
        self._stopped = True  # a stream asked for from now on would never end
        await cancel_and_wait(self._replay)
        await cancel_and_wait(self._pusher)
        for reader in self._readers:
            reader.end()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET /mesh/stream: a `board` frame, the latest `event` frames, then both as they
        come."""
        if self._stopped:
            return web.json_response({"error": "this node is stopping"}, status=503)
        if len(self._readers) >= self._limit:
            self.refused += 1
            return web.json_response(
                {"error": f"{self._limit} dashboard streams already open (MESH_DASHBOARD_READERS)"},
                status=503,
            )
        reader = Backlog(self._backlog)
        await self._loads.listen(self._bus)
        self._hear_events()
        # Taken and registered in one step: no event falls between the two.
        first = b"".join([f"retry: {RETRY_MS}\n\n".encode(), self._board_frame(), *self._recent])
        self._readers.add(reader)
        response = web.StreamResponse(headers=STREAM_HEADERS)
        try:
            await response.prepare(request)
            await response.write(first)
            while (waiting := await reader.next()) is not None:
                await response.write(waiting)
        except ConnectionError:
            log.debug("a dashboard reader went away")
        finally:
            self._readers.discard(reader)
        return response

    def _view_changed(self, view: View) -> None:
        self._due.set()

    async def _push_forever(self) -> None:
        """Until stopped: a board that fails to build (a bug, a record nobody foresaw)
        must neither end the pushes for good nor make the node's stop raise."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._every)
            self._due.clear()
            if self._readers:
                try:
                    frame = self._board_frame()
                except Exception:
                    self._board_failed()
                    continue
                for reader in self._readers:
                    reader.board(frame)

    def _board_failed(self) -> None:
        """Called within the `except` (log.exception takes its traceback)."""
        self.board_failures += 1
        now = self._clock.monotonic()
        last = self._failure_logged_at
        if last is None or now - last >= FAILURE_LOG_EVERY:
            self._failure_logged_at = now
            log.exception(
                "the dashboard's board could not be built (%d times so far; readers keep"
                " the last one)",
                self.board_failures,
            )

    async def _on_event(self, delivery: Delivery) -> None:
        try:
            event = decode(delivery.subject, delivery.data)
        except InvalidMessage:
            return  # counted by the nodes that act on events; the dashboard only shows them
        if not isinstance(event, Event) or event.id in self._seen or 0 < event.at < self._since:
            return  # (an event of no stated time, at 0, is shown)
        self._seen[event.id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        frame = _frame("event", msgspec.json.encode(event))
        self._recent.append(frame)
        for reader in self._readers:
            if not reader.event(frame):
                self.dropped += 1

    def _board_frame(self) -> bytes:
        members = self._discovery.view.members
        self._loads.retain(members)
        shown = board.board(
            self._node, members.values(), self._loads.latest, wall=self._clock.wall()
        )
        return _frame("board", msgspec.json.encode(shown))


STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a proxy in front must pass frames on as they come
}


def _frame(kind: str, data: bytes) -> bytes:
    """One server-sent event; JSON never holds a raw newline, so one data line is enough."""
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
