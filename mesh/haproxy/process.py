"""HAProxy as the gateway's child: master-worker, reloaded hitlessly, restarted after a crash."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mesh import tasks
from mesh.clock import monotonic
from mesh.errors import HaproxyError
from mesh.haproxy.binary import check_config
from mesh.haproxy.run import POLL, Run
from mesh.haproxy.runtime_api import RuntimeApi
from mesh.haproxy.show_answers import Processes
from mesh.node.children import how_it_ended

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.1
MOST_BACKOFF = 5.0
STEADY = 10.0  # a HAProxy that ran this long before crashing restarts without backoff


class HaproxyProcess:
    """HAProxy (master and workers) in a private 0700 directory, dying with the gateway.

    The config text given is HAProxy's own but for the stats socket, which this class
    adds in a global section of its own (in its directory; see `stats`). After a crash,
    `on_crash` hears how it ended, and HAProxy starts again from `config()`, after a
    backoff doubling from FIRST_BACKOFF to MOST_BACKOFF; `restarts` counts them.
    """

    def __init__(
        self,
        binary: str,
        *,
        config: Callable[[], str],
        on_crash: Callable[[str], None],
        start_timeout: float = 5.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.binary = binary
        self._config = config
        self._on_crash = on_crash
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.restarts = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="mesh-haproxy-"))  # mode 0700
        self.stats = RuntimeApi(str(self.workdir / "stats.sock"))
        self.master = RuntimeApi(str(self.workdir / "master.sock"))
        self._run: Run | None = None
        self._settled = 0  # lines the run had said when it last started or reloaded
        self._lock = asyncio.Lock()  # one start, restart or reload at a time
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The master's pid while it runs."""
        run = self._run
        return run.process.pid if run is not None and run.process.returncode is None else None

    async def start(self, config_text: str) -> None:
        """Check and run the config; return once the stats socket answers. HaproxyError
        with one line naming the cause (refused config, address in use) otherwise."""
        async with self._lock:
            await self._launch(config_text)
        tasks.hold(self._tasks, self._watch())

    async def reload(self, config_text: str) -> None:
        """Serve `config_text` through a hitless reload; return once a new worker answers.
        A config HAProxy refuses raises HaproxyError and the old one keeps serving."""
        async with self._lock:
            run = self._running()
            await self._write_checked(config_text)
            before = await self._shown(run)
            said = run.output.said
            await self.master.send("reload")
            try:
                await self._until_reloaded(run, before, said)
            finally:
                self._settled = run.output.said

    async def stop(self) -> None:
        """Soft stop within stop_grace, then SIGTERM, then SIGKILL; nothing is left
        running and the working directory is removed."""
        self._stopping = True
        for task in list(self._tasks):
            await tasks.cancel_and_wait(task)
        if self._run is not None:
            await self._run.stop(self.stop_grace)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _running(self) -> Run:
        if self._run is None or self._run.process.returncode is not None:
            raise HaproxyError("haproxy is not running")
        return self._run

    async def _shown(self, run: Run) -> Processes:
        """`show proc`, waiting for a master that re-executes (after a failed reload it
        says so at once, and answers again a second or two later)."""
        deadline = monotonic() + self.start_timeout
        while (shown := await run.shown()) is None:
            await run.raise_if_exited("before a reload")
            if monotonic() > deadline:
                raise HaproxyError("haproxy's master socket does not answer: cannot reload")
            await asyncio.sleep(POLL)
        return shown

    async def _until_reloaded(self, run: Run, before: Processes, said: int) -> None:
        # The master re-executes itself: its socket refuses until it has loaded the
        # config, or failed to (then the old workers go on, and it counts the failure).
        deadline = monotonic() + self.start_timeout
        while monotonic() < deadline:
            await run.raise_if_exited("during a reload")
            if any("Loading failure" in line for line in run.output.since(said)):
                raise HaproxyError(f"haproxy could not reload: {run.output.cause(said)}")
            now = await run.shown()
            if now is not None and now.failed_reloads > before.failed_reloads:
                raise HaproxyError(f"haproxy could not reload: {run.output.cause(said)}")
            if (
                now is not None
                and now.reloads > before.reloads
                and await run.answers_from(now.workers)
            ):
                return
            await asyncio.sleep(POLL)
        raise HaproxyError(f"haproxy did not reload within {self.start_timeout:g} s")

    async def _launch(self, config_text: str) -> None:
        config = await self._write_checked(config_text)
        run = Run(self.binary, config, self.stats, self.master)
        await run.start(self.start_timeout)
        self._run, self._settled = run, run.output.said

    async def _write_checked(self, config_text: str) -> Path:
        candidate, config = self.workdir / "candidate.cfg", self.workdir / "haproxy.cfg"
        stats = f"global\n    stats socket {self.stats.path} level admin\n\n"
        candidate.write_text(stats + config_text)
        await check_config(self.binary, candidate)
        candidate.replace(config)
        return config

    async def _watch(self) -> None:
        delay = FIRST_BACKOFF
        while True:
            run = self._run
            assert run is not None  # started before this watch
            started = monotonic()
            code = await run.process.wait()
            if self._stopping:
                return
            await run.output.ended()
            await run.stop(grace=0.0)  # workers it left, and its output's reader
            self._report(f"haproxy {how_it_ended(code)}: {run.output.cause(self._settled)}")
            if monotonic() - started > STEADY:
                delay = FIRST_BACKOFF
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MOST_BACKOFF)
                try:
                    async with self._lock:
                        await self._launch(self._config())
                except Exception as error:  # the renderer's too: keep trying, and say so
                    if not isinstance(error, HaproxyError):
                        log.exception("haproxy could not restart")
                    self._report(f"haproxy could not restart: {error}")
                    continue
                self.restarts += 1
                break

    def _report(self, how: str) -> None:
        log.warning("%s", how)
        try:
            self._on_crash(how)
        except Exception:  # a failing report must not end the restarts
            log.exception("on_crash failed")
