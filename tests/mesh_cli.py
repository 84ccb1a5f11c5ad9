"""`mesh ...` run in this process, its output captured: as a user runs it, minus a fork."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from mesh import cli


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def mesh_command(*args: str) -> Ran:
    """`mesh ARGS`; from async code, run it in a thread (the commands call asyncio.run)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return Ran(code, out.getvalue(), err.getvalue())


def policy(nats_url: str, *args: str) -> Ran:
    """`mesh policy ARGS --nats-url URL`."""
    return mesh_command("policy", *args, "--nats-url", nats_url)
