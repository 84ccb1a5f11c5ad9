"""Pinning with taskset: one core for the proxy under test, one for everything else."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from bench.console import BenchError


@dataclass(frozen=True, slots=True)
class Cores:
    """The core the proxy under test gets alone, and the one for everything else."""

    proxy: str
    load: str

    @property
    def both(self) -> str:
        return f"{self.proxy},{self.load}"


def pick_cores() -> Cores:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise BenchError(f"needs two cores to pin proxy and load apart; this has {allowed}")
    return Cores(str(allowed[0]), str(allowed[1]))


def pinned(command: Sequence[str], cpus: str) -> list[str]:
    """`command` run by taskset on `cpus` ("0" or "0,1"); taskset execs, so the pid stays."""
    return ["taskset", "-c", cpus, *command]


def pin_threads(pid: int, cpus: str) -> None:
    """Pin every thread of a running process (one started by code that cannot prefix taskset)."""
    mask = {int(c) for c in cpus.split(",")}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), mask)
