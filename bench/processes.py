"""The children of a benchmark: each in its own process group, all stopped on the way out."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.console import BenchError
from mesh.node.children import Child, how_it_ended, stop

REPO = Path(__file__).resolve().parent.parent  # where the children run


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
        self,
        label: str,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> Child:
        child = Child(
            label,
            command,
            env={**os.environ, **(env or {})},
            log=self.logdir / f"{label}.log",
            cwd=cwd,
            own_session=True,
        )
        child.start()
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if a child has exited: a benchmark against a dead process means nothing."""
        for child in self.children:
            code = child.returncode
            if code is not None:
                raise BenchError(f"{child.label} {how_it_ended(code)}:\n{child.tail(2000)}")

    def stop_all(self, grace: float = 5.0) -> None:
        stop([list(reversed(self.children))], grace=grace)
        self.children.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


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
