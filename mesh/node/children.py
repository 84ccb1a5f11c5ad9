"""Child processes: start one, signal it, stop groups of them in order (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from mesh.clock import monotonic

# The exit code of a child that cannot start as asked (a port held by another process):
# sysexits' EX_CONFIG. A restart would fail the same way, so a supervisor gives up on it.
CANNOT_START = 78

_PR_SET_DEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec hook making Linux SIGTERM the child when the thread that started it exits.

    PR_SET_DEATHSIG follows the creating *thread*: start children from the main thread or
    the event loop's thread, never from a short-lived worker thread (`asyncio.to_thread`).
    Elsewhere than Linux this returns None (no hook).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: no dlopen after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_DEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def how_it_ended(code: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL', from a Popen return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class Child:
    """One child process, started (and started again) from the same command line.

    `log`: a file its output is appended to (None: it inherits ours). `own_session`: out
    of our terminal's process group, so a Ctrl-C reaches only us and we stop it in our
    order; it then leads a process group, which `stop` signals as a whole (grandchildren
    included). Every child gets SIGTERM if the thread that started it exits.
    `pass_fds`: descriptors it inherits under the same numbers (a listening socket).
    """

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
        own_session: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.label = label
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log = log
        self.cwd = cwd
        self.own_session = own_session
        self.pass_fds = tuple(pass_fds)
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run the command (again); OSError if it cannot be run at all."""
        with contextlib.ExitStack() as stack:
            # The child keeps its own copy of the descriptor, so ours is closed at once.
            out = stack.enter_context(self.log.open("ab")) if self.log is not None else None
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                env=self.env,
                cwd=self.cwd,
                start_new_session=self.own_session,
                pass_fds=self.pass_fds,
                # Safe enough with threads: the hook only calls a function resolved pre-fork.
                preexec_fn=die_with_parent(),
            )

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.label} was never started")
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs (or before it started), else how it ended (reaped here)."""
        return None if self.popen is None else self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the process itself, if it still runs."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)  # a no-op once it has been reaped

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code; subprocess.TimeoutExpired if it still runs after `timeout`."""
        if self.popen is None:
            raise RuntimeError(f"{self.label} was never started")
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap it."""
        stop([[self]], grace=0.0, first=signal.SIGKILL)

    def tail(self, size: int = 4000) -> str:
        """The end of its log, for error messages."""
        if self.log is None or not self.log.exists():
            return "(no log)"
        with self.log.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - size))
            return file.read().decode(errors="replace")

    def _signal_all(self, sig: int) -> None:
        if self.popen is None:
            return
        if self.own_session:
            # The group outlives its leader while grandchildren (nginx workers) are in it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)  # a new session's group id is its leader's pid
        else:
            self.signal(sig)


def stop(
    groups: Iterable[Iterable[Child]],
    *,
    grace: float,
    first: int = signal.SIGTERM,
    clock: Callable[[], float] = monotonic,
) -> None:
    """Stop each group in turn: `first` to all of it, then SIGKILL what is left after `grace`.

    A group's members stop in parallel and share the grace; the next group starts only
    once the previous one is gone (agents leave before NATS, which carries their leave).
    This blocks: an event loop runs it in a thread.
    """
    for group in groups:
        started = [child for child in group if child.popen is not None]
        for child in started:
            child._signal_all(first)
        deadline = clock() + grace
        for child in started:
            assert child.popen is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(max(0.0, deadline - clock()))
            child._signal_all(signal.SIGKILL)  # stragglers, and any grandchildren
            child.popen.wait()
