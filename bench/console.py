"""What a benchmark tells its user: progress lines, and the error that stops it."""

from __future__ import annotations


class BenchError(Exception):
    """A benchmark cannot run or went wrong; the message says why."""


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)
