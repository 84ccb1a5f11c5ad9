"""One run of HAProxy's master and its workers: spawned, waited on until it serves, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

from mesh import tasks
from mesh.clock import monotonic
from mesh.errors import HaproxyError, RuntimeApiError
from mesh.haproxy.output import Output
from mesh.haproxy.runtime_api import RuntimeApi
from mesh.haproxy.show_answers import Processes, processes
from mesh.node.children import die_with_parent, how_it_ended

POLL = 0.02
_PID = re.compile(r"^Pid: (\d+)$", re.MULTILINE)


class Run:
    """A HAProxy master started in master-worker mode on `config`, as its own process
    group, which gets SIGTERM if the thread that started it (the event loop's) ends."""

    def __init__(self, binary: str, config: Path, stats: RuntimeApi, master: RuntimeApi) -> None:
        self.argv = [binary, "-W", "-f", str(config), "-S", f"{master.path},mode,600"]
        self.stats = stats
        self.master = master
        self.output = Output()
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("haproxy was never started")
        return self._process

    async def start(self, timeout: float) -> None:
        """Return once the master shows a worker and the stats socket answers from it;
        HaproxyError naming the cause (and nothing left running) if it does not."""
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own group: a Ctrl-C reaches the gateway alone, which stops it in order.
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        assert process.stdout is not None
        tasks.hold(self._tasks, self.output.follow(process.stdout))
        try:
            deadline = monotonic() + timeout
            while (now := await self.shown()) is None or not await self.answers_from(now.workers):
                await self.raise_if_exited("at start")
                if monotonic() > deadline:
                    raise HaproxyError(f"haproxy did not answer within {timeout:g} s")
                await asyncio.sleep(POLL)
        except BaseException:
            await self.stop(grace=0.0)
            raise

    async def shown(self) -> Processes | None:
        """`show proc` from the master, or None while it does not answer (re-executing)."""
        try:
            return processes((await self.master.run(["show proc"]))[0])
        except RuntimeApiError:
            return None

    async def answers_from(self, workers: tuple[int, ...]) -> bool:
        """Whether the stats socket answers, from one of `workers`."""
        try:
            info = (await self.stats.run(["show info"]))[0]
        except RuntimeApiError:
            return False
        pid = _PID.search(info)
        return pid is not None and int(pid[1]) in workers

    async def raise_if_exited(self, when: str) -> None:
        """HaproxyError with the cause HAProxy gave, if the master has exited."""
        code = self.process.returncode
        if code is None:
            return
        await self.output.ended()
        cause = self.output.cause()
        if cause.startswith("cannot listen"):
            raise HaproxyError(f"haproxy {cause}")
        raise HaproxyError(f"haproxy {how_it_ended(code)} {when}: {cause}")

    async def stop(self, grace: float) -> None:
        """Soft stop (SIGUSR1: in-flight requests finish) within `grace`, then SIGTERM,
        then SIGKILL to the whole group (workers a dead master left behind). Once only:
        the group's id is the master's pid, which the system may give out again."""
        if self._stopped:
            return
        self._stopped = True
        process = self.process
        for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 1.0)):
            if process.returncode is None and wait > 0:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), wait)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        for task in list(self._tasks):
            await tasks.cancel_and_wait(task)
