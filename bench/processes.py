"""The children of a benchmark: each in its own process group, all stopped on the way out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.console import BenchError
from mesh.node.process import die_with_parent

_REPO = Path(__file__).resolve().parent.parent  # where the children run


@dataclass(slots=True)
class Child:
    label: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, size: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_bytes()[-size:].decode(errors="replace")
        return "(no log)"


class Processes:
    """The children of one benchmark; leaving the `with` block stops them all.

    Each child leads a process group of its own, so a Ctrl-C at the terminal reaches only
    the benchmark, which then stops the children in reverse order of start (and a
    multi-process child such as nginx, master and workers, as a whole). If the benchmark
    itself is killed, Linux sends each child SIGTERM (PR_SET_DEATHSIG).
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[Child] = []

    def start(
        self, label: str, command: Sequence[str], *, env: dict[str, str] | None = None
    ) -> Child:
        log = self.logdir / f"{label}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=_REPO,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        child = Child(label, popen, log)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if a child has exited: a benchmark against a dead process means nothing."""
        for child in self.children:
            code = child.popen.poll()
            if code is not None:
                raise BenchError(f"{child.label} exited with {code}:\n{child.tail()}")

    def stop_all(self, grace: float = 5.0) -> None:
        for child in reversed(self.children):
            _signal_group(child.popen, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(max(0.0, deadline - time.monotonic()))
            _signal_group(child.popen, signal.SIGKILL)  # stragglers, and any grandchildren
            child.popen.wait()
        self.children.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)  # start_new_session: the group id is the child's pid


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so `finally` blocks stop the children as Ctrl-C does."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
