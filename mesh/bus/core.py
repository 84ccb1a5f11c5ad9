"""Core NATS: connection with reconnect handling, publish, subscribe, request, streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from mesh.addresses import redact_url
from mesh.bus.credentials import REFUSED_PUBLISH, connect_credentials, refusal
from mesh.config import Settings
from mesh.errors import BusError, BusRefused, BusTimeout, BusUnavailable, NoResponders
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)
T = TypeVar("T")


def _not_eof_noise(record: logging.LogRecord) -> bool:
    # nats-py's transport asks asyncio to keep a half-closed socket open, which asyncio
    # cannot do under TLS and says so each time a server closes one: noise, not news.
    return not record.getMessage().startswith("returning true from eof_received()")


logging.getLogger("asyncio").addFilter(_not_eof_noise)


@dataclass(frozen=True, slots=True)
class Delivery:
    subject: str
    data: bytes
    reply: str = ""
    headers: dict[str, str] | None = None


Handler = Callable[[Delivery], Awaitable[None]]
StateListener = Callable[[bool], None]


class Bus(Protocol):
    """What the shells need from a message bus; NatsBus and MemoryBus both provide it."""

    @property
    def connected(self) -> bool: ...

    def on_state(self, listener: StateListener) -> None: ...

    async def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> None: ...

    async def subscribe(self, subject: str, handler: Handler) -> None: ...

    async def unsubscribe(self, subject: str, handler: Handler) -> None: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes: ...

    async def publish_stored(
        self, subject: str, data: bytes, *, msg_id: str, stream: str, timeout: float
    ) -> bool:
        """Publish, and wait until `stream` stored it (deduplicated by `msg_id`): True.
        False when `stream` does not exist (the message went out, stored by nobody).
        BusError when it exists and did not store it (no leader, in an election): the
        caller publishes again later, and the duplicate window keeps one copy."""

    async def flush(self, timeout: float) -> None: ...

    async def wait_connected(self) -> None:
        """Return once the bus has been connected (at once, after the first time)."""

    async def close(self) -> None: ...


# Without `wait`, start() still waits this long for the first attempt to end, so that
# refused credentials end a starting process at once; an unreachable server does not.
_FIRST_TRY = 2.5


# An ordered consumer (a policy watch, `mesh events tail`) lives on one NATS node. The
# server sends an idle heartbeat this often while it has nothing to deliver; two missed
# tell nats-py the consumer is gone (its node died) and it makes a new one from the next
# message: it resumes within 2-4 s of the node's loss, neither losing nor repeating a
# message, instead of nats-py's 10-20 s. Each idle one costs its node a small message a beat.
CONSUMER_HEARTBEAT = 1.0

# What ensure_stream sets, so what it compares with a stream that exists already.
_STREAM_FIELDS = (
    "subjects",
    "storage",
    "retention",
    "max_age",
    "max_bytes",
    "duplicate_window",
    "num_replicas",
    "max_consumers",
)
# Consumers a stream admits. nats-server (2.15 here) refuses a stream's 1,001st consumer
# unless the stream says otherwise, and every mesh node holds one ordered consumer on the
# policy bucket: left at that, 1,000 nodes would be the mesh's size limit. An idle ordered
# consumer costs the server a few KB, so the bound is set far above any fleet instead.
WATCHERS = 100_000
# JetStream's error codes for more replicas than it has nodes to place them on: a single
# server (not clustered), or a cluster with fewer JetStream nodes up than asked.
_TOO_MANY_REPLICAS = frozenset({10074, 10023, 10005})


def mapped(exc: BaseException) -> BusError:
    if isinstance(exc, BusError):
        return exc  # ours already (a refusal, say)
    if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError):
        return BusTimeout(str(exc) or "NATS did not answer in time")
    if isinstance(exc, nats.errors.NoRespondersError):
        return NoResponders("no responders on that subject")
    if isinstance(
        exc,
        nats.errors.ConnectionClosedError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.NoServersError
        | OSError,
    ):
        return BusUnavailable(f"not connected to NATS ({type(exc).__name__})")
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return BusError("JetStream is unavailable on this NATS server (not enabled?)")
    return BusError(f"{type(exc).__name__}: {exc}")


def replicas_refused(exc: BaseException, what: str, replicas: int) -> BusError | None:
    """A clear error if NATS refused `what` for want of nodes to hold `replicas` copies."""
    if not isinstance(exc, nats.js.errors.APIError) or exc.err_code not in _TOO_MANY_REPLICAS:
        return None
    return BusError(
        f"NATS cannot keep {what} at {replicas} replicas ({exc.description}): "
        "MESH_NATS_REPLICAS must not exceed the JetStream nodes up in the cluster "
        "(1 on a single server)"
    )


def _where(nc: Client) -> str:
    url = nc.connected_url  # host and port only: its netloc may hold user:password@
    return f"{url.hostname}:{url.port}" if url is not None else "?"


class NatsBus:
    """A NATS connection that keeps retrying and tells listeners when it comes and goes."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self._name = name
        self._nc: Client = Client()
        self._listeners: list[StateListener] = []
        self._wanted: list[tuple[str, Handler]] = []
        self._subs: list[tuple[str, Handler, Subscription]] = []
        self._up = asyncio.Event()
        self._tried = asyncio.Event()  # an attempt to connect ended, connected or not
        self._refused: str | None = None  # why NATS refused us before we were ever up
        self._last_error = ""
        self._denied: set[str] = set()  # permission violations already logged
        # Work waiting on an answer to what it published, by subject: a refusal ends it.
        self._waiting: dict[str, list[asyncio.Future[str]]] = {}
        self._connector: asyncio.Task[None] | None = None
        self._closing = False
        # Built now: an unreadable credential file or an expired certificate is a
        # ConfigError before the process takes a port or starts anything.
        self._options = self._connect_options()

    @property
    def connected(self) -> bool:
        return self._nc.is_connected

    @property
    def replicas(self) -> int:
        """How many JetStream replicas the mesh's stream and bucket should have, at least."""
        return self._settings.nats_replicas

    @property
    def client(self) -> Client:
        """The raw client, for mesh modules that wrap JetStream (events, policy store)."""
        return self._nc

    def on_state(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def _notify(self, connected: bool) -> None:
        for listener in self._listeners:
            try:
                listener(connected)
            except Exception:
                log.exception("bus state listener failed")

    async def start(self, *, wait: float | None = None) -> None:
        """Connect in the background (retrying forever); with `wait`, fail if not up by then.

        Refused credentials and refused TLS fail here at once (BusRefused): unlike an
        unreachable server, they do not get better with time.
        """
        if self._connector is None:
            self._connector = asyncio.create_task(self._connect(), name="nats-connect")
        with contextlib.suppress(TimeoutError):
            if wait is None:
                await asyncio.wait_for(self._tried.wait(), _FIRST_TRY)
            else:
                await asyncio.wait_for(self._settled(), wait)
        if self._refused is not None:
            raise BusRefused(self._refused)
        if wait is not None and not self._up.is_set():
            why = f": {self._last_error}" if self._last_error else ""
            where = redact_url(self._settings.nats_url)
            raise BusUnavailable(f"could not reach NATS at {where} within {wait:g} s{why}")

    async def _settled(self) -> None:
        """Until connected or refused."""
        while not self._up.is_set() and self._refused is None:
            self._tried.clear()
            await self._tried.wait()

    def _connect_options(self) -> dict[str, Any]:
        s = self._settings
        return {
            "servers": [u.strip() for u in s.nats_url.split(",") if u.strip()],
            "name": self._name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # a mesh node outlives any NATS outage
            "reconnect_time_wait": s.nats_reconnect_wait,
            "connect_timeout": 2,
            # Pings find a silently dead server; loopback kills are seen at once anyway.
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            **connect_credentials(s),
        }

    async def _connect(self) -> None:
        await self._nc.connect(**self._options)
        for subject, handler in self._wanted:
            await self._subscribe_now(subject, handler)
        self._up.set()
        self._tried.set()
        log.info("connected to NATS at %s", _where(self._nc))
        self._notify(True)

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        why = refusal(exc)
        refused = REFUSED_PUBLISH.search(text)
        told = False
        for waiting in self._waiting.get(refused.group(1) if refused else "", ()):
            if not waiting.done():
                waiting.set_result(text)
                told = True
        if told:  # unless_refused raises it to its caller, which says it: once is enough
            return
        if "permissions violation" in text.lower() or (why and self._up.is_set()):
            # What these credentials may not (or no longer) do: a setup mistake, worth
            # one warning each; a node already up keeps retrying on its last view.
            if text not in self._denied and len(self._denied) < 64:
                self._denied.add(text)
                log.warning("NATS refused: %s", why or text)
            return
        log.debug("NATS: %s: %s", type(exc).__name__, text)
        if self._up.is_set():
            return
        self._last_error = text
        if why is not None and self._refused is None:
            self._refused = why
            # Stop retrying: connect() awaits this callback, so cancel it from outside.
            if self._connector is not None:
                asyncio.get_running_loop().call_soon(self._connector.cancel)
        self._tried.set()

    async def _on_disconnected(self) -> None:
        if self._up.is_set() and not self._closing:
            log.warning("disconnected from NATS; serving from the last view")
            self._notify(False)

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", _where(self._nc))
        self._notify(True)

    async def unless_refused(self, subject: str, work: Awaitable[T]) -> T:
        """`work`, which publishes on `subject` and waits for an answer; BusRefused at once
        if the server refuses these credentials that subject (no answer would ever come)."""
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        subject = subject.lower()  # as nats-py reports it
        self._waiting.setdefault(subject, []).append(refused)
        task = asyncio.ensure_future(work)
        try:
            either: list[asyncio.Future[Any]] = [task, refused]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting[subject].remove(refused)
            if not self._waiting[subject]:
                del self._waiting[subject]
        if task.done():
            return task.result()
        await cancel_and_wait(task)
        raise BusRefused(f"NATS refused: {refused.result()}")

    async def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> None:
        if not self._up.is_set():
            raise BusUnavailable("not connected to NATS yet")
        try:
            await self._nc.publish(subject, data, headers=headers)
        except Exception as exc:
            raise mapped(exc) from exc

    async def subscribe(self, subject: str, handler: Handler) -> None:
        """Deliver every message on `subject` to `handler`, from now and after reconnects."""
        self._wanted.append((subject, handler))
        if self._up.is_set():
            try:
                await self._subscribe_now(subject, handler)
            except Exception as exc:
                self._wanted.remove((subject, handler))
                raise mapped(exc) from exc

    async def _subscribe_now(self, subject: str, handler: Handler) -> None:
        async def deliver(msg: Msg) -> None:
            try:
                await handler(Delivery(msg.subject, msg.data, msg.reply, msg.headers))
            except Exception:
                log.exception("handler for %s failed", msg.subject)

        self._subs.append((subject, handler, await self._nc.subscribe(subject, cb=deliver)))

    async def unsubscribe(self, subject: str, handler: Handler) -> None:
        """Undo `subscribe(subject, handler)`: nothing more is delivered, even after reconnects."""
        with contextlib.suppress(ValueError):
            self._wanted.remove((subject, handler))
        for held in [held for held in self._subs if held[:2] == (subject, handler)]:
            self._subs.remove(held)
            with contextlib.suppress(Exception):  # closed or away: the server forgets it anyway
                await held[2].unsubscribe()

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        try:
            msg = await self._nc.request(subject, data, timeout=timeout)
        except Exception as exc:
            raise mapped(exc) from exc
        return bytes(msg.data)

    async def publish_stored(
        self, subject: str, data: bytes, *, msg_id: str, stream: str, timeout: float
    ) -> bool:
        js = self._nc.jetstream()
        try:
            await js.publish(subject, data, timeout=timeout, headers={"Nats-Msg-Id": msg_id})
            return True
        except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError):
            # No stream took it: there is none, or its group is electing a leader.
            if await self._stream_missing(stream, timeout):
                return False
            raise NoResponders(f"{stream} did not store the message (electing a leader?)") from None
        except Exception as exc:
            raise mapped(exc) from exc

    async def _stream_missing(self, stream: str, timeout: float) -> bool:
        """True only when NATS says `stream` does not exist (or JetStream is off); any
        other answer (none in time, not allowed to ask) may be an election."""
        try:
            await asyncio.wait_for(self._nc.jetstream().stream_info(stream), timeout)
        except (nats.js.errors.NotFoundError, nats.js.errors.ServiceUnavailableError):
            return True
        except Exception:
            return False
        return False

    async def gather(self, subject: str, data: bytes, wait: float) -> list[bytes]:
        """Every answer to one request that arrives within `wait` seconds: for requests
        that many answer, as each server of a cluster does the system account's PINGs."""
        answers: list[bytes] = []

        async def keep(msg: Msg) -> None:
            answers.append(bytes(msg.data))

        inbox = self._nc.new_inbox()
        try:
            sub = await self._nc.subscribe(inbox, cb=keep)
            try:
                await self._nc.publish(subject, data, reply=inbox)
                await asyncio.sleep(wait)
            finally:
                await sub.unsubscribe()
        except Exception as exc:
            raise mapped(exc) from exc
        return answers

    async def flush(self, timeout: float) -> None:
        if not self.connected:
            raise BusUnavailable("not connected to NATS")
        try:
            await self._nc.flush(timeout=max(1, round(timeout)))
        except Exception as exc:
            raise mapped(exc) from exc

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def ensure_stream(
        self,
        name: str,
        subjects: list[str],
        *,
        max_age: float,
        max_bytes: int,
        duplicate_window: float,
    ) -> None:
        """Create the stream, or bring an existing one to this configuration (its replicas
        to at least `replicas`)."""
        config = StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=max_age,
            max_bytes=max_bytes,
            duplicate_window=duplicate_window,
            num_replicas=self.replicas,
            max_consumers=WATCHERS,
        )
        js = self._nc.jetstream()
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                # Read first: a node whose credentials may only read the stream (a gateway
                # on a secured NATS) is done when the admin set it up as it would have.
                info = js.stream_info(name)
                current = (await self.unless_refused(f"$JS.API.STREAM.INFO.{name}", info)).config
                # Never fewer replicas than the stream has: a node left at the default
                # (1) must not undo what the admin set up.
                config.num_replicas = max(config.num_replicas or 1, current.num_replicas or 1)
                if all(getattr(current, f) == getattr(config, f) for f in _STREAM_FIELDS):
                    return
            try:
                await self.unless_refused(f"$JS.API.STREAM.CREATE.{name}", js.add_stream(config))
            except nats.js.errors.BadRequestError:
                # Exists with other limits: adopt ours.
                await self.unless_refused(f"$JS.API.STREAM.UPDATE.{name}", js.update_stream(config))
        except Exception as exc:
            raise replicas_refused(exc, name, self.replicas) or mapped(exc) from exc

    async def ensure_capacity(self, stream: str) -> None:
        """Raise `stream` (which exists) to `replicas` copies and WATCHERS consumers where
        it has fewer; never lowers either. Replicas are what the operator asked for:
        credentials that may not raise them are an error naming the admin's step. The
        consumer cap is not (the mesh works below it): refused, a warning."""
        js = self._nc.jetstream()
        short_of_replicas = self.replicas > 1  # until the stream says otherwise
        try:
            info = js.stream_info(stream)
            config = (await self.unless_refused(f"$JS.API.STREAM.INFO.{stream}", info)).config
            short_of_replicas = (config.num_replicas or 1) < self.replicas
            if not short_of_replicas and (config.max_consumers or 0) >= WATCHERS:
                return
            config.num_replicas = max(config.num_replicas or 1, self.replicas)
            config.max_consumers = max(config.max_consumers or 0, WATCHERS)
            update = js.update_stream(config)
            await self.unless_refused(f"$JS.API.STREAM.UPDATE.{stream}", update)
            if short_of_replicas:
                log.info("%s raised to %d replicas", stream, self.replicas)
        except BusRefused as exc:
            if short_of_replicas:
                raise BusRefused(
                    f"cannot check or raise {stream} to {self.replicas} replicas with these "
                    f"credentials ({exc}): run `mesh nats setup` as the admin with "
                    f"MESH_NATS_REPLICAS={self.replicas}"
                ) from exc
            log.warning(
                "%s admits only the server's default number of consumers (1,000 on recent "
                "nats-servers), and every node holds one; these credentials cannot raise "
                "it (%s): run `mesh nats setup` as the admin",
                stream,
                exc,
            )
        except Exception as exc:
            raise replicas_refused(exc, stream, self.replicas) or mapped(exc) from exc

    async def replay(
        self,
        stream: str,
        subject: str,
        since: float | None,
        handler: Handler,
        *,
        most: int | None = None,
    ) -> None:
        """Deliver the stream's messages on `subject` stored from `since` (epoch seconds;
        None: from now), then new ones as they arrive, through an ordered ephemeral consumer.

        With `most`, only the stream's last `most` messages are replayed, and `since` is
        the handler's to apply: a reader that keeps the latest few need not read an hour
        of a large mesh's events (10,000 arrivals) to find them."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.NEW if since is None else DeliverPolicy.BY_START_TIME,
            opt_start_time=None if since is None else datetime.fromtimestamp(since, UTC),
        )
        if since is not None and most is not None:
            try:
                state = (await self._nc.jetstream().stream_info(stream)).state
            except Exception as exc:
                raise mapped(exc) from exc
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(state.first_seq, state.last_seq - most + 1, 1),
            )

        async def deliver(msg: Msg) -> None:
            await handler(Delivery(msg.subject, msg.data, "", msg.headers))

        try:
            await self._nc.jetstream().subscribe(
                subject,
                stream=stream,
                cb=deliver,
                ordered_consumer=True,
                idle_heartbeat=CONSUMER_HEARTBEAT,
                config=config,
            )
        except Exception as exc:
            raise mapped(exc) from exc

    async def close(self) -> None:
        self._closing = True
        if self._connector is not None and not self._connector.done():
            with contextlib.suppress(Exception):
                await cancel_and_wait(self._connector)
        if not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()


async def until_done(bus: NatsBus, what: str, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` once NATS is reachable; retry it, backing off, until it succeeds."""
    delay = 0.5
    while True:
        await bus.wait_connected()
        try:
            await action()
            return
        except BusRefused as exc:
            # These credentials may not (a gateway on a secured NATS): the admin's to do.
            log.warning("cannot set up %s: %s; left as it is", what, exc)
            return
        except BusError as exc:
            log.warning("cannot set up %s yet: %s", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
