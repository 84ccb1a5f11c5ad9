"""Folds bus messages into the view, expires silent members, freezes while NATS is away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

from mesh import clock as system_clock
from mesh import subjects
from mesh.bus import Bus, Delivery, Handler
from mesh.bus.events import EventLog
from mesh.clock import Clock
from mesh.membership import view as membership
from mesh.membership.following import Following, Subjects
from mesh.messages import Event, decode_counted
from mesh.metrics import Metrics
from mesh.tasks import cancel_and_wait, hold
from mesh.timing import Timing

log = logging.getLogger(__name__)

Listener = Callable[[membership.View], None]
_ARRIVALS = frozenset({"instance.up", "instance.restarted"})
# Seconds between two asks for one service's records that its beats said were missed.
ASK_AGAIN_EVERY = 5.0


class Discovery:
    """The shell around the pure view: decide in mesh.membership.view, act here.

    It hears every service (`everything`: gateways by default), or only those it wants
    (agents): `want` on a first call or a policy's `preload` (`pin`), dropped after
    `idle` seconds without a call. Other handlers can follow the same services (`follow`).
    """

    def __init__(
        self,
        bus: Bus,
        timing: Timing,
        *,
        node: str,
        metrics: Metrics,
        events: EventLog | None,
        clock: Clock = system_clock,
        everything: bool = True,
        idle: float = 600.0,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._node = node
        self._metrics = metrics
        self._events = events
        self.view = membership.View(timing)
        self._listeners: list[Listener] = []
        # Changes not told to the listeners yet: the version they count from and the
        # services they touched.
        self._untold: tuple[int, set[str]] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.following = Following(bus, node=node, everything=everything, idle=idle)
        self.following.add(subjects.following, self._deliver)
        # First calls waiting for a routable member of one of these services.
        self._arriving: list[tuple[frozenset[str], asyncio.Future[None]]] = []
        self._reserved: set[str] = set()  # names first calls are about to follow
        self._background: set[asyncio.Task[None]] = set()  # drops and syncs, kept until done
        self._asked: dict[str, float] = {}  # service -> when its records were asked again
        self.asked_again = 0
        metrics.counter(
            "mesh_records_asked_again",
            "Services whose nodes were asked for their records again because a short beat "
            "said this node missed one (a record never held, or a gap in seq).",
            (),
            lambda: [((), float(self.asked_again))],
        )
        # Expiry runs this often; a quarter interval keeps detection within 25% of target.
        self._tick_every = min(0.25, timing.interval / 4)

    def on_change(self, listener: Listener) -> None:
        """Call `listener(view)` whenever routing may have changed."""
        self._listeners.append(listener)

    def follow(self, subjects_of: Subjects, handler: Handler) -> None:
        """Hear what `subjects_of(service)` names for each service this node follows
        (evidence, say); register before start."""
        self.following.add(subjects_of, handler)

    @property
    def used(self) -> dict[str, float]:
        """Followed service -> last call (monotonic): the forwarding path stamps it."""
        return self.following.interest.used

    def interested(self, service: str) -> bool:
        return self.following.interested(service)

    async def want(self, service: str) -> None:
        """Follow `service`; returns once its subscriptions exist and its sync is sent."""
        await self.following.want(service, self._clock.monotonic())

    async def pin(self, services: Iterable[str]) -> None:
        """Follow these (a policy's `preload`) until no longer pinned; never idle."""
        await self.following.pin(services, self._clock.monotonic())

    async def drop(self, service: str) -> None:
        """Stop following `service` and forget its members (no events: they did not go)."""
        if await self.following.drop(service):
            log.info("no longer following %s", service)
            self._commit(membership.without(self.view, service), [])

    def reserve(self, services: Iterable[str]) -> None:
        """Count these as followed from now, before `first_call` runs: first calls made in
        one turn of the loop must not all pass a cap that only counts what was followed."""
        self._reserved.update(services)

    @property
    def following_count(self) -> int:
        return len(self.following.interest.followed.keys() | self._reserved)

    async def first_call(self, services: Iterable[str], timeout: float) -> None:
        """Follow `services` and wait, at most `timeout`, until one has a routable member.

        A name of which no member was heard within twice `timeout` is let go again (not
        pinned ones): names that requests make up (a Host header) hold no slot of the
        follow cap for MESH_INTEREST_IDLE, and a real service whose records come later
        is followed again by its next call."""
        wanted = frozenset(services)
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[None] = loop.create_future()
        waiter = (wanted, arrived)
        self._arriving.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self.want(service) for service in wanted))
                self._check_arrivals()
                await arrived
        except TimeoutError:
            pass
        finally:
            self._arriving.remove(waiter)
            self._reserved.difference_update(wanted)
        loop.call_later(timeout, self._let_go_unheard, wanted)

    def _let_go_unheard(self, services: frozenset[str]) -> None:
        interest = self.following.interest
        for service in services:
            heard = next(self.view.of_service(service), None) is not None
            if not heard and interest.follows(service) and service not in interest.pinned:
                hold(self._background, self.drop(service))

    async def start(self) -> None:
        await self.following.start()
        self._bus.on_state(self._on_bus_state)
        if not self._bus.connected:
            self.view = membership.freeze(self.view, self._clock.monotonic())
        else:
            await self.following.sync()
        self._ticker = asyncio.create_task(self._tick_forever(), name="discovery-tick")

    async def settled(self, quiet: float, most: float) -> None:
        """Return once the view has not changed for `quiet` seconds (the answers to the
        start's sync are in), or after `most` seconds, or at once without NATS: a gateway
        that served before would answer 404 for a service whose records were on the way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + most
        version, since = self.view.version, loop.time()
        while self._bus.connected and loop.time() < deadline:
            await asyncio.sleep(quiet / 4)
            if self.view.version != version:
                version, since = self.view.version, loop.time()
            elif loop.time() - since >= quiet:
                return

    async def stop(self) -> None:
        await cancel_and_wait(self._ticker)

    async def _deliver(self, delivery: Delivery) -> None:
        if not self.following.everything:
            # Straggler of a service just dropped: it would linger, then expire loudly.
            owner = subjects.owner(delivery.subject)
            if owner is None or not self.following.interest.follows(owner[0]):
                return
        message = decode_counted(delivery.subject, delivery.data, self._metrics.invalid_message)
        if message is None:
            return
        view, effects = membership.apply(
            self.view, message, self._clock.monotonic(), wall=self._clock.wall()
        )
        self._commit(view, effects)

    def _commit(self, view: membership.View, effects: list[membership.Effect]) -> None:
        changed = view.version != self.view.version
        if changed:
            self._note_change(view)
        self.view = view
        for effect in effects:
            if isinstance(effect, Event):
                log.info("%s %s/%s", effect.kind, effect.service, effect.instance)
                if self._events is not None and not self._own_arrival(effect):
                    self._events.emit(effect)
            elif isinstance(effect, membership.Missed):
                self._ask_again(effect.service)
            else:
                self._metrics.dropped(effect.reason)
        if changed and self._arriving:
            self._check_arrivals()

    def _note_change(self, view: membership.View) -> None:
        """Listeners hear of changes once per turn of the loop: a burst (a sync's answers,
        a new gateway's first second) read in one turn costs one rebuild of each service
        it touched, not one per message. Every step here derives from the view held."""
        assert view.changed_since == self.view.version, "a view not derived from ours"
        if self._untold is None:
            self._untold = (self.view.version, set())
            asyncio.get_running_loop().call_soon(self._tell)
        self._untold[1].update(view.changed)

    def _tell(self) -> None:
        if self._untold is None:
            return
        since, services = self._untold
        self._untold = None
        view = replace(self.view, changed=frozenset(services), changed_since=since)
        for listener in self._listeners:
            listener(view)

    def _ask_again(self, service: str) -> None:
        """Ask `service`'s nodes for their records, at most once per ASK_AGAIN_EVERY: a
        fleet's beats that arrive before the answers to a start's sync all say so."""
        now = self._clock.monotonic()
        if now - self._asked.get(service, -ASK_AGAIN_EVERY) < ASK_AGAIN_EVERY:
            return
        self._asked[service] = now
        self.asked_again += 1
        hold(self._background, self.following.ask(service))

    def _check_arrivals(self) -> None:
        """Wake the first calls that now have a routable member: reads only the services
        they wait for, never the whole fleet (this runs on every change while one waits)."""
        view = self.view
        for services, arrived in self._arriving:
            if not arrived.done() and any(
                m.routable for service in services for m in view.of_service(service)
            ):
                arrived.set_result(None)

    def _own_arrival(self, event: Event) -> bool:
        """Our own start: the nodes already there, or starting within the arrival grace,
        tell it. We cannot know whether we restart an instance they knew
        (instance.restarted) or are a new one, and ours, under the same id, would be the
        first copy out, the one stored: every restart would read as a start."""
        return event.instance == self._node and event.kind in _ARRIVALS

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_every)
            now = self._clock.monotonic()
            view, effects = membership.tick(self.view, now)
            if view is not self.view:
                self._commit(view, effects)
            for service in self.following.idle(now):
                await self.drop(service)

    def _on_bus_state(self, connected: bool) -> None:
        now = self._clock.monotonic()
        if connected:
            self.view = membership.thaw(self.view, now)
            hold(self._background, self.following.sync())
        else:
            # Expiries already due are settled first; only later silence is excused.
            view, effects = membership.tick(self.view, now)
            if view is not self.view:
                self._commit(view, effects)
            self.view = membership.freeze(self.view, now)
