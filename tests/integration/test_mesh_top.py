"""`mesh top` against a running mesh: its rates and success rates are the load sent."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from mesh_cli import Ran, mesh_command

from agents import agent
from gateway import gateway
from mesh import cli, config
from mesh.node.ports import free_port
from mesh.observe import top
from mesh.playground.natsserver import NatsServer

SERVICE = "toptest"
RATE = 100.0  # requests per second sent through the gateway
FAIL_EVERY = 4  # every 4th request is answered 503: a success rate of 75 %
# A window holds about 50 requests (one interval, 0.5 s, ended by a periodic heartbeat
# before top asked): one request more or less, and the pacing's jitter on a shared
# machine, stay within these.
RATE_TOLERANCE = 0.10
SUCCESS_TOLERANCE = 0.05


async def demo(request: web.Request) -> web.Response:
    return web.Response(status=503 if request.path == "/fail" else 200, text="ok")


@dataclass
class Mesh:
    nats_url: str
    gateway_port: int


@pytest.fixture
async def mesh(module_nats: NatsServer) -> AsyncIterator[Mesh]:
    """A gateway and an agent in this process, and the agent's service answering 503 on
    /fail; heartbeats every 0.5 s, so that a window holds a countable load."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", demo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    service_port, gateway_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", service_port).start()
    settings = config.load(
        nats_url=module_nats.url,
        preset="local",
        heartbeat_interval=0.5,
        gateway_listen=f"127.0.0.1:{gateway_port}",
        gateway_admin="127.0.0.1:0",
        gateway_name="top-gw",
        gateway_default_routes=True,
    )
    stop = asyncio.Event()
    options = agent.AgentOptions(
        service=SERVICE,
        port=service_port,
        host="127.0.0.1",
        health_path="/healthz",
        admin_port=0,
        instance_id="toptest-1",
        outbound="",
    )
    nodes = [
        asyncio.create_task(gateway.run(settings, stop)),
        asyncio.create_task(agent.run(settings, options, stop)),
    ]
    try:
        yield Mesh(module_nats.url, gateway_port)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*nodes), 5)
        await runner.cleanup()


async def paced(session: aiohttp.ClientSession, port: int, seconds: float) -> int:
    """RATE requests a second for `seconds`, every FAIL_EVERY-th to /fail; how many sent."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    count = int(seconds * RATE)
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / RATE - loop.time()))
        path = "/fail" if n % FAIL_EVERY == FAIL_EVERY - 1 else "/ok"
        async with session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": SERVICE}):
            pass
    return count


async def routed(session: aiohttp.ClientSession, port: int) -> None:
    """Until the gateway routes to the service (bounded)."""
    for _ in range(100):
        with contextlib.suppress(aiohttp.ClientConnectorError):  # not listening yet
            async with session.get(f"http://127.0.0.1:{port}/ok", headers={"Host": SERVICE}) as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway never routed to the service")


def top_once(nats_url: str, *args: str) -> Ran:
    return mesh_command("top", "--once", "--nats-url", nats_url, "--wait", "0.3", *args)


async def test_top_shows_the_rate_and_success_rate_sent_per_service_and_per_instance(
    mesh: Mesh,
) -> None:
    async with aiohttp.ClientSession() as session:
        await routed(session, mesh.gateway_port)
        load = asyncio.create_task(paced(session, mesh.gateway_port, 2.2))
        await asyncio.sleep(1.1)  # two full windows of steady load behind us
        # One after the other: each takes over this process's stdout while it runs.
        services = await asyncio.to_thread(top_once, mesh.nats_url, "--json")
        instances = await asyncio.to_thread(top_once, mesh.nats_url, "--json", "--service", SERVICE)
        assert not load.done(), "the load ended before top looked: a window may be idle"
        await load

    assert services.returncode == 0, services.stderr
    [row] = [r for r in json.loads(services.stdout)["services"] if r["service"] == SERVICE]
    signals = row["signals"]
    assert signals["rate"] == pytest.approx(RATE, rel=RATE_TOLERANCE)
    assert signals["success"] == pytest.approx(1 - 1 / FAIL_EVERY, abs=SUCCESS_TOLERANCE)
    assert 0 < signals["p50"] <= signals["p99"] < 1.0
    assert signals["callers"] == 1  # the gateway; the agent forwarded nothing
    assert row["states"] == {"alive": 1}

    assert instances.returncode == 0, instances.stderr
    [instance] = json.loads(instances.stdout)["instances"]
    assert (instance["instance"], instance["state"]) == ("toptest-1", "alive")
    assert instance["signals"]["rate"] == pytest.approx(RATE, rel=RATE_TOLERANCE)
    assert instance["signals"]["success"] == pytest.approx(
        1 - 1 / FAIL_EVERY, abs=SUCCESS_TOLERANCE
    )


def test_a_service_top_does_not_know_is_said_and_ends_non_zero(module_nats: NatsServer) -> None:
    ran = top_once(module_nats.url, "--service", "nosuch")
    assert ran.returncode == 1
    assert ran.stdout.strip() == "no instances of 'nosuch' (yet)"


def test_json_on_a_pipe_is_a_line_per_refresh_until_interrupted(module_nats: NatsServer) -> None:
    """What a script reads from `mesh top --json | ...`: stdout here is no terminal. In
    the main thread, as from a shell, so that top's own SIGINT handler ends it."""
    out, done = io.StringIO(), threading.Event()

    def interrupt_after_two_lines() -> None:
        deadline = time.monotonic() + 5.0
        while not done.is_set() and time.monotonic() < deadline:
            if out.getvalue().count("\n") >= 2:
                os.kill(os.getpid(), signal.SIGINT)  # top's handler is in place by now
                return
            time.sleep(0.01)

    ctrl_c = threading.Thread(target=interrupt_after_two_lines)
    ctrl_c.start()
    args = ["top", "--json", "--nats-url", module_nats.url, "--wait", "0.05", "--interval", "0.05"]
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main(args)
    finally:
        done.set()
        ctrl_c.join()
    assert code == 0
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2, lines  # it went on refreshing until the interrupt
    assert all("services" in json.loads(line) for line in lines)


def test_nats_unreachable_is_one_line_and_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(top, "CONNECT_WAIT", 0.2)
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        ran = mesh_command("top", "--once", "--nats-url", url)
    assert ran.returncode == 2
    assert ran.stdout == ""
    [line] = ran.stderr.splitlines()
    assert line.startswith("mesh top: could not reach NATS at nats://127.0.0.1:")
