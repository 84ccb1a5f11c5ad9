"""HAProxy as the gateway's child: master-worker, reloaded hitlessly, restarted after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path

from mesh import tasks
from mesh.clock import monotonic
from mesh.errors import HaproxyError, RuntimeApiError
from mesh.haproxy.binary import alerts, check_config
from mesh.haproxy.runtime_api import RuntimeApi
from mesh.haproxy.show_answers import Processes, processes
from mesh.node.children import _die_with_parent, how_it_ended

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.1
MOST_BACKOFF = 5.0
STEADY = 10.0  # a HAProxy that ran this long before crashing restarts without backoff
_POLL = 0.02
_KEPT_LINES = 200  # HAProxy's recent output, for the causes named in errors
_CANNOT_BIND = re.compile(r"cannot bind socket \(([^)]*)\) (?:for )?\[([^\]]+)\]")
_PID = re.compile(r"^Pid: (\d+)$", re.MULTILINE)


class HaproxyProcess:
    """One HAProxy master (and its workers) in a private 0700 directory, dying with us.

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
        self._master: asyncio.subprocess.Process | None = None
        self._output: deque[str] = deque(maxlen=_KEPT_LINES)
        self._said = 0  # lines HAProxy has output so far
        self._settled = 0  # ...when it last started or reloaded well
        self._lock = asyncio.Lock()  # one start, restart or reload at a time
        self._stopping = False
        self._followed = asyncio.Event()  # set once the output of the last start has ended
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        """The master's pid while it runs."""
        running = self._master is not None and self._master.returncode is None
        return self._master.pid if running and self._master is not None else None

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
            await self._write_checked(config_text)
            before = processes((await self.master.run(["show proc"]))[0])
            said = self._said
            await self.master.send("reload")
            try:
                await self._until_reloaded(before, said)
            finally:
                self._settled = self._said

    async def _until_reloaded(self, before: Processes, said: int) -> None:
        # The master re-executes itself: its socket refuses until it has loaded the
        # config, or failed to (then the old workers go on, and it counts the failure).
        deadline = monotonic() + self.start_timeout
        while monotonic() < deadline:
            await self._raise_if_exited("during a reload")
            now = await self._shown()
            if now is not None and now.failed_reloads > before.failed_reloads:
                cause = self._cause(self._said_since(said))
                raise HaproxyError(f"haproxy could not reload: {cause}")
            if (
                now is not None
                and now.reloads > before.reloads
                and await self._answers_from(now.workers)
            ):
                return
            await asyncio.sleep(_POLL)
        raise HaproxyError(f"haproxy did not reload within {self.start_timeout:g} s")

    async def stop(self) -> None:
        """Soft stop (SIGUSR1: in-flight requests finish) within stop_grace, then SIGTERM,
        then SIGKILL to its whole process group; the working directory is removed."""
        self._stopping = True
        for task in list(self._tasks):
            await tasks.cancel_and_wait(task)
        master = self._master
        if master is not None:
            for sig, grace in ((signal.SIGUSR1, self.stop_grace), (signal.SIGTERM, 1.0)):
                if master.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        master.send_signal(sig)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(master.wait(), grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(master.pid, signal.SIGKILL)  # workers left behind, if any
            await master.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def _launch(self, config_text: str) -> None:
        await self._write_checked(config_text)
        self._output.clear()
        self._followed.clear()
        self._master = master = await asyncio.create_subprocess_exec(
            self.binary,
            "-W",
            "-f",
            str(self._config_path),
            "-S",
            f"{self.master.path},mode,600",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own group: a Ctrl-C reaches the gateway alone, which stops it in order.
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        assert master.stdout is not None
        tasks.hold(self._tasks, self._follow(master.stdout))
        try:
            deadline = monotonic() + self.start_timeout
            while (now := await self._shown()) is None or not await self._answers_from(now.workers):
                if monotonic() > deadline:
                    raise HaproxyError(f"haproxy did not answer within {self.start_timeout:g} s")
                await self._raise_if_exited("at start")
                await asyncio.sleep(_POLL)
            self._settled = self._said
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(master.pid, signal.SIGKILL)
            await master.wait()
            raise

    async def _write_checked(self, config_text: str) -> None:
        candidate = self.workdir / "candidate.cfg"
        candidate.write_text(f"global\n    stats socket {self.stats.path} level admin\n\n")
        with candidate.open("a") as file:
            file.write(config_text)
        await check_config(self.binary, candidate)
        candidate.replace(self._config_path)

    @property
    def _config_path(self) -> Path:
        return self.workdir / "haproxy.cfg"

    async def _shown(self) -> Processes | None:
        """`show proc` from the master, or None while it does not answer (re-executing)."""
        try:
            return processes((await self.master.run(["show proc"]))[0])
        except RuntimeApiError:
            return None

    async def _answers_from(self, workers: tuple[int, ...]) -> bool:
        """Whether the stats socket answers, from one of `workers`."""
        try:
            info = (await self.stats.run(["show info"]))[0]
        except RuntimeApiError:
            return False
        pid = _PID.search(info)
        return pid is not None and int(pid[1]) in workers

    async def _raise_if_exited(self, when: str) -> None:
        master = self._master
        if master is None or master.returncode is None:
            return
        with contextlib.suppress(TimeoutError):  # its last words, read to the end
            await asyncio.wait_for(self._followed.wait(), 1.0)
        cause = self._cause(list(self._output))
        if cause.startswith("cannot listen"):
            raise HaproxyError(f"haproxy {cause}")
        raise HaproxyError(f"haproxy {how_it_ended(master.returncode)} {when}: {cause}")

    def _said_since(self, said: int) -> list[str]:
        """What HAProxy output after it had said `said` lines (as much as was kept)."""
        return list(self._output)[-(self._said - said) :] if self._said > said else []

    @staticmethod
    def _cause(lines: list[str]) -> str:
        """The cause HAProxy gave in `lines` of its output, as one line."""
        text = "\n".join(lines)
        if bound := _CANNOT_BIND.search(text):
            return f"cannot listen on {bound[2]}: {bound[1].lower()}"
        return alerts(text) or "(it said nothing)"

    async def _follow(self, output: asyncio.StreamReader) -> None:
        """HAProxy's output into our log, prefixed, and kept for error messages."""
        async for raw in output:
            line = raw.decode(errors="replace").rstrip()
            self._output.append(line)
            self._said += 1
            log.log(logging.WARNING if "[ALERT]" in line else logging.INFO, "haproxy: %s", line)
        self._followed.set()

    async def _watch(self) -> None:
        delay = FIRST_BACKOFF
        while True:
            assert self._master is not None
            started = monotonic()
            code = await self._master.wait()
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._followed.wait(), 1.0)
            cause = self._cause(self._said_since(self._settled))
            self._on_crash(f"haproxy {how_it_ended(code)}: {cause}")
            if monotonic() - started > STEADY:
                delay = FIRST_BACKOFF
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MOST_BACKOFF)
                try:
                    async with self._lock:
                        await self._launch(self._config())
                except HaproxyError as error:
                    self._on_crash(f"haproxy could not restart: {error}")
                    continue
                self.restarts += 1
                break
