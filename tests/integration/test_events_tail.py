"""`mesh events tail` filters: --service with or without --kind, live and from the stored log."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import get_args

import nats
import pytest
from mesh_cli import Ran, mesh_command
from nats.aio.client import Client

from mesh import config, subjects
from mesh.bus import NatsBus, setup
from mesh.messages import Event, EventKind, encode
from mesh.observe.events import Printer, events_filter, follow
from mesh.playground.natsserver import NatsServer

# The stored events, published once for the module: two services, two kinds.
STORED: list[tuple[EventKind, str]] = [
    ("instance.up", "orders"),
    ("instance.up", "payments"),
    ("health.failing", "orders"),
    ("health.failing", "payments"),
]


@pytest.fixture(scope="module")
def stored(module_nats: NatsServer) -> str:
    """MESH_EVENTS on the module's own server, holding STORED; its URL."""

    async def fill() -> None:
        await setup.set_up(config.load(nats_url=module_nats.url))
        client = await nats.connect(module_nats.url, connect_timeout=2)
        try:
            for n, (kind, service) in enumerate(STORED):
                await publish(client, kind, service, f"stored-{n}")
            await client.flush()
        finally:
            await client.close()

    asyncio.run(fill())
    return module_nats.url


async def publish(client: Client, kind: EventKind, service: str, event_id: str) -> None:
    event = Event(
        id=event_id, kind=kind, service=service, instance="i-1", node="test", at=time.time()
    )
    await client.publish(
        subjects.event(kind, service), encode(event), headers={"Nats-Msg-Id": event_id}
    )


def seen(ran: Ran) -> list[tuple[str, str]]:
    assert ran.returncode == 0, ran.stderr
    return [(e["kind"], e["service"]) for e in map(json.loads, ran.stdout.splitlines())]


def tail(url: str, *args: str) -> Ran:
    """On the main thread: the command handles Ctrl-C, which only the main thread can."""
    return mesh_command("events", "tail", "--json", "--nats-url", url, *args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--service", "orders"], [("instance.up", "orders"), ("health.failing", "orders")]),
        (["--kind", "health.*", "--service", "payments"], [("health.failing", "payments")]),
        (["--kind", "instance.up"], [("instance.up", "orders"), ("instance.up", "payments")]),
    ],
)
def test_the_stored_log_is_filtered(
    stored: str, args: list[str], expected: list[tuple[str, str]]
) -> None:
    assert seen(tail(stored, "--since", "1h", "--for", "0.5s", *args)) == expected


def test_the_live_tail_shows_only_the_service_asked_for(stored: str) -> None:
    done = threading.Event()

    async def speak() -> None:
        # Until the tail ends (it subscribes at some point within), both services speak
        # (services of their own: what is published here is stored too).
        client = await nats.connect(stored, connect_timeout=2)
        try:
            for n in range(60):
                if done.is_set():
                    break
                await publish(client, "instance.down", "web", f"live-web-{n}")
                await publish(client, "instance.down", "search", f"live-search-{n}")
                await asyncio.sleep(0.05)
        finally:
            await client.close()

    speaker = threading.Thread(target=asyncio.run, args=(speak(),))
    speaker.start()
    try:
        shown = seen(tail(stored, "--service", "web", "--for", "1.5s"))
    finally:
        done.set()
        speaker.join(timeout=5)
    assert shown, "the tail saw nothing"
    assert set(shown) == {("instance.down", "web")}


@pytest.mark.parametrize(
    ("flag", "value"), [("--kind", "instance"), ("--kind", "a.b.c"), ("--service", "or ders")]
)
def test_a_filter_that_cannot_match_is_refused_in_one_line(flag: str, value: str) -> None:
    ran = mesh_command("events", "tail", flag, value, "--nats-url", "nats://127.0.0.1:1")
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1
    assert flag in ran.stderr
    assert ran.stdout == ""


@pytest.mark.parametrize("kind", get_args(EventKind))
def test_every_kind_leaves_the_service_in_the_third_token(kind: str) -> None:
    """The filter puts --service after two kind tokens: a longer kind would escape it."""
    assert len(kind.split(".")) == 2


def test_since_replays_exactly_the_window_each_event_once(
    stored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the window: not shown; stored in it but seen before it (a node that was cut
    off publishes late): not shown; in it: all, once each, though sent twice."""

    async def scenario() -> None:
        client = await nats.connect(stored, connect_timeout=2)
        bus = NatsBus(config.load(nats_url=stored), name="test-since")
        try:
            await publish(client, "instance.down", "window", "before")
            await client.flush()
            await asyncio.sleep(0.3)
            since = time.time()
            await asyncio.sleep(0.05)
            late = Event(id="late", kind="instance.down", service="window", at=since - 1.0)
            await client.publish(
                subjects.event("instance.down", "window"),
                encode(late),
                headers={"Nats-Msg-Id": "late"},
            )
            for event_id in ("inside-1", "inside-2", "inside-1"):  # a second observer's copy
                await publish(client, "instance.down", "window", event_id)
            await client.flush()
            await bus.start(wait=5.0)
            printer = Printer(since=since, as_json=True)
            await follow(bus, events_filter("*.*", "window"), since, printer)
            await asyncio.sleep(0.2)
            await publish(client, "instance.up", "window", "after")  # then it follows
            await asyncio.sleep(0.2)
        finally:
            await bus.close()
            await client.close()

    asyncio.run(scenario())
    shown = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert shown == ["inside-1", "inside-2", "after"]
