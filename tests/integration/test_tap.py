"""`mesh tap` against a running mesh: a real nats-server, a gateway and an agent (in this
process, on a thread of their own), their requests seen through the tap as sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from aiohttp import web
from mesh_cli import Ran, mesh_command
from mesh_procs import Client, get_json, wait_for
from msgspec.structs import replace
from prometheus_client.parser import text_string_to_metric_families

from agents import agent
from gateway import gateway
from mesh import config, subjects
from mesh.messages import TapFilter, TapOpen, TapRecords, decode, encode
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer

SERVICE = "tapped"
HOST = {"Host": SERVICE}
AGENT_CAP = 5  # the agent's records a second; the gateway keeps the default
DROPPED = "mesh_tap_records_dropped_total"


@dataclass
class Running:
    nats_url: str
    gateway_port: int
    gateway_admin: int
    outbound_port: int
    agent_admin: int

    def gateway(self) -> Client:
        return Client(self.gateway_port)

    def outbound(self) -> Client:
        """The agent's outbound proxy, as its service calls others: by Host."""
        return Client(self.outbound_port)


def metric(admin_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2) as page:
        text = page.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no {name}")


def taps_open(mesh: Running) -> tuple[float, float]:
    return (
        metric(mesh.gateway_admin, "mesh_taps_open"),
        metric(mesh.agent_admin, "mesh_taps_open"),
    )


async def _upstream(port: int) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="ok " + request.path)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture(scope="module")
def mesh(module_nats: NatsServer) -> Iterator[Running]:
    """A service, its agent and a gateway, on an event loop of their own thread."""
    ports = {name: free_port() for name in ("service", "gw", "gw_admin", "outbound", "admin")}
    running = Running(
        module_nats.url, ports["gw"], ports["gw_admin"], ports["outbound"], ports["admin"]
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()

    async def serve() -> None:
        common: dict[str, Any] = {"nats_url": module_nats.url, "preset": "local"}
        upstream = await _upstream(ports["service"])
        options = agent.AgentOptions(
            service=SERVICE,
            port=ports["service"],
            host="127.0.0.1",
            health_path="/healthz",
            admin_port=ports["admin"],
            instance_id="tapped-a",
            outbound=f"127.0.0.1:{ports['outbound']}",
        )
        edge = config.load(
            **common,
            gateway_listen=f"127.0.0.1:{ports['gw']}",
            gateway_admin=f"127.0.0.1:{ports['gw_admin']}",
            gateway_workers=1,
        )
        try:
            await asyncio.gather(
                agent.run(config.load(**common, tap_max_records=AGENT_CAP), options, stop),
                gateway.run(edge, stop),
            )
        finally:
            await upstream.cleanup()

    served: Future[None] = asyncio.run_coroutine_threadsafe(serve(), loop)
    try:
        wait_for(lambda: _routable(running), timeout=15)
        yield running
    finally:
        loop.call_soon_threadsafe(stop.set)
        served.result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def _routable(mesh: Running) -> bool:
    try:
        members = get_json(mesh.gateway_admin, "/mesh/members")["members"]
        ready = get_json(mesh.agent_admin, "/healthz")["outbound"] == "serving"
    except (OSError, ValueError, KeyError):
        return False
    return ready and any(m["service"] == SERVICE and m["routable"] for m in members)


def tap_while(mesh: Running, send: Callable[[], None], *args: str) -> Ran:
    """`mesh tap ARGS` on this thread (the command's own loop); `send` runs beside it
    once both nodes know the tap."""

    def sender() -> None:
        wait_for(lambda: taps_open(mesh) == (1, 1), timeout=5)
        send()

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        return mesh_command("tap", "--nats-url", mesh.nats_url, "--json", *args)
    finally:
        thread.join(10)


def records(ran: Ran) -> list[dict[str, Any]]:
    assert ran.returncode == 0, ran.stderr
    return [json.loads(line) for line in ran.stdout.splitlines()]


def test_a_tap_sees_what_its_filter_wants_from_every_node_and_nothing_once_closed(
    mesh: Running,
) -> None:
    def send() -> None:
        edge, outbound = mesh.gateway(), mesh.outbound()
        # First what the filter leaves out: a leak would be among the five records shown.
        assert edge.request("POST", "/t/no", b"x", HOST)[0] == 200
        assert edge.request("GET", "/u/no", None, HOST)[0] == 200
        assert outbound.request("DELETE", "/t/no", None, HOST)[0] == 200
        for n in range(3):
            edge.request("GET", f"/t/{n}?secret=s", None, {**HOST, "x-request-id": f"gw-{n}"})
        for n in range(2):
            outbound.request("GET", f"/t/o{n}", None, {**HOST, "x-request-id": f"out-{n}"})

    ran = tap_while(
        mesh, send, "--path", "/t/", "--method", "get", "--max", "5", "--duration", "10s"
    )
    seen = records(ran)
    assert {r["request_id"]: r["path"] for r in seen} == {
        "gw-0": "/t/0",
        "gw-1": "/t/1",
        "gw-2": "/t/2",
        "out-0": "/t/o0",
        "out-1": "/t/o1",
    }
    assert {(r["method"], r["status"], r["flags"], r["service"]) for r in seen} == {
        ("GET", 200, "-", SERVICE)
    }
    assert {r["instance"] for r in seen} == {"tapped-a"}
    (edge,) = {r["node"] for r in seen if r["request_id"].startswith("gw-")}
    assert edge.startswith("gateway-")
    assert {r["node"] for r in seen if r["request_id"].startswith("out-")} == {"tapped-a"}
    assert all(r["bytes_out"] == len("ok " + r["path"]) for r in seen)
    assert "5 records shown, 0 dropped" in ran.stderr

    # Closed: the goodbye reached both nodes, which send nothing more.
    wait_for(lambda: taps_open(mesh) == (0, 0), timeout=3)
    assert _published_while(mesh, lambda: _one_each(mesh)) == []


def _one_each(mesh: Running) -> None:
    assert mesh.gateway().request("GET", "/t/after", None, HOST)[0] == 200
    assert mesh.outbound().request("GET", "/t/after", None, HOST)[0] == 200


def _published_while(mesh: Running, send: Callable[[], None], wait: float = 0.5) -> list[str]:
    """The subjects of tap records published on NATS while `send` ran and `wait` after."""

    async def watch() -> list[str]:
        client = await nats.connect(mesh.nats_url)
        seen: list[str] = []

        async def heard(msg: Any) -> None:
            seen.append(msg.subject)

        await client.subscribe(subjects.TAPPED, cb=heard)
        await client.flush()
        await asyncio.to_thread(send)
        await asyncio.sleep(wait)  # more than a flush interval
        await client.close()
        return seen

    return asyncio.run(watch())


def test_a_sampled_tap_sees_about_its_share(mesh: Running) -> None:
    """The exact share a seeded draw gives is unit-tested (test_tap_table); here the
    engine's own draws: 80 requests at 0.5 leave 40 +- 4.5, so 15..65 fails one run in
    millions."""
    sent = 80

    def send_then_ctrl_c() -> None:
        edge = mesh.gateway()
        for n in range(sent):
            assert edge.request("GET", f"/s/{n}", None, HOST)[0] == 200
        time.sleep(0.5)  # two flushes: every sampled record reached the tap
        if taps_open(mesh) == (1, 1):
            os.kill(os.getpid(), signal.SIGINT)

    ran = tap_while(mesh, send_then_ctrl_c, "--path", "/s/", "--sample", "0.5", "--duration", "10s")
    seen = records(ran)
    assert 15 <= len(seen) <= 65
    assert len({r["path"] for r in seen}) == len(seen)  # each request once, at most
    assert f"{len(seen)} records shown, 0 dropped" in ran.stderr


def test_a_tap_that_never_said_goodbye_is_forgotten_after_its_ttl(mesh: Running) -> None:
    async def announce() -> None:  # as a killed `mesh tap` left it
        client = await nats.connect(mesh.nats_url)
        await client.publish(subjects.TAP, encode(TapOpen(id="killed", ttl=0.5)))
        await client.close()

    asyncio.run(announce())
    wait_for(lambda: taps_open(mesh) == (1, 1), timeout=3)
    assert _published_while(mesh, lambda: _one_each(mesh), wait=0.3)  # open: records sent
    began = time.monotonic()
    wait_for(lambda: taps_open(mesh) == (0, 0), timeout=3)
    assert time.monotonic() - began < 1.0
    assert _published_while(mesh, lambda: _one_each(mesh)) == []


def test_over_the_cap_records_are_dropped_counted_and_shown(mesh: Running) -> None:
    def accounted() -> float:
        return sum(
            metric(mesh.agent_admin, name)
            for name in ("mesh_tap_records_sent_total", "mesh_tap_records_dropped_total")
        )

    # The cap is the node's, over all taps: a window that a test before this one began
    # (its last tick at most now) may have records taken already. One second later it
    # has ended, so this tap's first window takes a full AGENT_CAP.
    time.sleep(1.1)
    dropped_before, accounted_before = metric(mesh.agent_admin, DROPPED), accounted()
    sent = 20

    def send_then_ctrl_c() -> None:
        outbound = mesh.outbound()
        for n in range(sent):
            assert outbound.request("GET", f"/c/{n}", None, HOST)[0] == 200
        wait_for(lambda: accounted() - accounted_before == sent, timeout=5)  # all flushed
        time.sleep(0.2)  # for the last batch to reach the tap
        if taps_open(mesh) == (1, 1):  # the tap still runs (its --duration is far off)
            os.kill(os.getpid(), signal.SIGINT)  # as a person ends it: it says goodbye

    ran = tap_while(mesh, send_then_ctrl_c, "--path", "/c/", "--duration", "10s")
    seen = records(ran)
    dropped = metric(mesh.agent_admin, DROPPED) - dropped_before
    # Within one or two windows of a second, each taking AGENT_CAP records.
    assert AGENT_CAP <= len(seen) <= 2 * AGENT_CAP
    assert len(seen) + dropped == sent
    assert f"{len(seen)} records shown, {int(dropped)} dropped" in ran.stderr
    assert "tapped-a: " in ran.stderr  # said as it happened, by the node that dropped
    wait_for(lambda: taps_open(mesh) == (0, 0), timeout=1)  # Ctrl-C said goodbye: no TTL


def test_a_flood_of_taps_keeps_each_nodes_cap_counts_the_rest_and_goodbyes_still_end_them(
    mesh: Running,
) -> None:
    """Anyone allowed to announce taps sends 1,000 that never match, for a minute each."""
    flood = [TapOpen(id=f"evil{n}", filter=TapFilter(status="5xx"), ttl=60) for n in range(1000)]
    kept = {f"evil{n}" for n in range(8)}  # MESH_TAP_MAX_OPEN's default
    before = refused(mesh)

    async def announce_and_hear() -> tuple[list[TapRecords], float, tuple[float, float]]:
        client = await nats.connect(mesh.nats_url)
        heard: list[TapRecords] = []

        async def hear(msg: Any) -> None:
            message = decode(msg.subject, msg.data)
            assert isinstance(message, TapRecords)
            heard.append(message)

        await client.subscribe(subjects.TAPPED, cb=hear)
        began = time.monotonic()
        try:
            for message in flood:
                await client.publish(subjects.TAP, encode(message))
            await client.flush()
            await asyncio.to_thread(
                wait_for, lambda: refused(mesh) == (before[0] + 992, before[1] + 992), 5
            )
            took = time.monotonic() - began
            opened = await asyncio.to_thread(taps_open, mesh)
            await client.flush()
        finally:  # whatever happened, the flood ends as it began, or stays a minute
            for message in flood:
                await client.publish(subjects.TAP, encode(replace(message, closing=True)))
            await client.close()
        return heard, took, opened

    heard, took, opened = asyncio.run(announce_and_hear())
    assert opened == (8, 8)
    for node in ("gateway-", "tapped-a"):  # each refused tap told, a few a second at most
        told = [m for m in heard if m.node.startswith(node)]
        assert 5 <= len(told) <= 5 * (took + 2)
        assert all(m.refused and not m.records and m.tap not in kept for m in told)
    wait_for(lambda: taps_open(mesh) == (0, 0), timeout=3)  # every goodbye heard


def refused(mesh: Running) -> tuple[float, float]:
    return (
        metric(mesh.gateway_admin, "mesh_taps_refused_total"),
        metric(mesh.agent_admin, "mesh_taps_refused_total"),
    )
