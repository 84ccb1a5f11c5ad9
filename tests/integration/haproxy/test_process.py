"""mesh.haproxy.process: the real HAProxy started, reloaded hitlessly, restarted, stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from haproxy_config import needs_haproxy
from haproxy_fixtures import BINARY, config, load, upstream

from mesh.errors import HaproxyError
from mesh.haproxy.process import HaproxyProcess
from mesh.haproxy.show_answers import processes
from mesh.node.ports import free_port

pytestmark = needs_haproxy
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    async for port in upstream():
        yield port


class Running:
    """A started HaproxyProcess, its port, and what it reported."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.text = config(self.port, upstream_port)
        self.crashes: list[str] = []
        assert BINARY is not None
        self.haproxy = HaproxyProcess(
            BINARY, config=lambda: self.text, on_crash=self.crashes.append, stop_grace=2.0
        )

    async def pids(self) -> set[int]:
        shown = processes((await self.haproxy.master.run(["show proc"]))[0])
        return {shown.master, *shown.workers, *shown.old_workers}

    async def get(self) -> int:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"http://127.0.0.1:{self.port}/") as response,
        ):
            return response.status


@pytest.fixture
async def running(upstream_port: int) -> AsyncIterator[Running]:
    run = Running(upstream_port)
    await run.haproxy.start(run.text)
    yield run
    await run.haproxy.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: its parent has not reaped it yet.
    status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return status != "Z"


async def gone(pids: set[int], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_start_serves_and_stop_leaves_nothing(upstream_port: int) -> None:
    run = Running(upstream_port)
    await run.haproxy.start(run.text)
    assert await run.get() == 200
    pids = await run.pids()
    assert len(pids) == 2  # master and one worker
    assert oct(run.haproxy.workdir.stat().st_mode & 0o777) == "0o700"
    await run.haproxy.stop()
    assert await gone(pids, within=0.5)
    assert not run.haproxy.workdir.exists()
    assert run.crashes == []  # a stop is no crash


async def test_reload_under_load_fails_no_request(running: Running) -> None:
    before = await running.pids()
    traffic = asyncio.create_task(load(running.port, 200))
    await asyncio.sleep(0.05)
    running.text += "    retries 2\n"
    await running.haproxy.reload(running.text)
    assert not traffic.done()  # the reload happened under the load
    failures = await traffic
    assert failures == []
    shown = processes((await running.haproxy.master.run(["show proc"]))[0])
    assert shown.reloads == 1
    assert not set(shown.workers) & before  # a new worker serves


async def test_a_refused_config_on_reload_keeps_the_old_one_serving(running: Running) -> None:
    with pytest.raises(HaproxyError, match="unknown keyword 'bogus'") as refused:
        await running.haproxy.reload(running.text + "    bogus on\n")
    assert "\n" not in str(refused.value)
    assert await running.get() == 200
    shown = processes((await running.haproxy.master.run(["show proc"]))[0])
    assert (shown.reloads, shown.failed_reloads) == (0, 0)  # never reached HAProxy


async def test_a_reload_that_cannot_bind_fails_and_the_old_worker_serves(
    running: Running,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        moved = running.text.replace(f"127.0.0.1:{running.port}", address)
        with pytest.raises(HaproxyError) as failed:
            await running.haproxy.reload(moved)
    assert str(failed.value) == (
        f"haproxy could not reload: cannot listen on {address}: address already in use"
    )
    assert await running.get() == 200
    # The master, back from its failed load, takes the next reload.
    running.text += "    retries 2\n"
    await running.haproxy.reload(running.text)
    assert await running.get() == 200


@pytest.mark.parametrize("victim", ["worker", "master"])
async def test_a_killed_haproxy_is_reported_and_restarted(running: Running, victim: str) -> None:
    shown = processes((await running.haproxy.master.run(["show proc"]))[0])
    os.kill(shown.master if victim == "master" else shown.workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while running.haproxy.restarts == 0:
        assert time.monotonic() < deadline, f"not restarted; reported: {running.crashes}"
        await asyncio.sleep(0.02)
    assert len(running.crashes) == 1
    if victim == "master":
        assert running.crashes[0].startswith("haproxy was killed by SIGKILL")
    else:
        assert running.crashes[0].startswith("haproxy exited with code 137")
        assert "Current worker" in running.crashes[0]
    assert await running.get() == 200
    assert await gone({shown.master, *shown.workers})


async def test_a_restart_that_fails_is_reported_and_tried_again(running: Running) -> None:
    master = running.haproxy.pid
    assert master is not None
    with socket.socket() as taken:  # the current config's next start cannot bind
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        running.text = running.text.replace(f"127.0.0.1:{running.port}", address)
        os.kill(master, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while len(running.crashes) < 2:
            assert time.monotonic() < deadline, f"reported: {running.crashes}"
            await asyncio.sleep(0.02)
    assert running.crashes[1] == (
        f"haproxy could not restart: haproxy cannot listen on {address}: address already in use"
    )
    while running.haproxy.restarts == 0:  # the port is free now: the next try starts it
        assert time.monotonic() < deadline, f"not restarted; reported: {running.crashes}"
        await asyncio.sleep(0.02)
    running.port = int(address.rsplit(":", 1)[1])
    assert await running.get() == 200


async def test_a_taken_port_at_start_is_one_line(upstream_port: int) -> None:
    run = Running(upstream_port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", run.port))
        taken.listen()
        with pytest.raises(HaproxyError) as failed:
            await run.haproxy.start(run.text)
    assert str(failed.value) == (
        f"haproxy cannot listen on 127.0.0.1:{run.port}: address already in use"
    )
    await run.haproxy.stop()
    assert not run.haproxy.workdir.exists()


# A gateway stand-in: starts HAProxy, prints the master's pid, then waits to be killed.
GATEWAY = """
import asyncio, sys
from mesh.haproxy.process import HaproxyProcess
async def main():
    text = sys.argv[2]
    haproxy = HaproxyProcess(sys.argv[1], config=lambda: text, on_crash=print)
    await haproxy.start(text)
    print(haproxy.pid, haproxy.workdir, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_haproxy_dies_with_a_killed_gateway(upstream_port: int) -> None:
    assert BINARY is not None
    text = config(free_port(), upstream_port)
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-c", GATEWAY, BINARY, text, stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        assert gateway.stdout is not None
        pid, workdir = (await asyncio.wait_for(gateway.stdout.readline(), 10)).decode().split()
        master = int(pid)
        workers = set(map(int, children(master)))
        assert workers
    finally:
        gateway.kill()
        await gateway.wait()
    assert await gone({master, *workers})
    shutil.rmtree(workdir)  # a SIGKILLed gateway cannot remove it


def children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
