"""CPU time from /proc: of a process tree, of everyone else, and busy share per core."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name may contain spaces and parentheses: split after its last ')'.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _processes() -> dict[int, list[str]]:
    """Every process's stat fields (from the state on), by pid."""
    found: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[int(entry)] = _stat_fields(int(entry))
    return found


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (stat fields 14, 15)


def _tree(root: int, stats: dict[int, list[str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and all its live descendants."""
    stats = _processes()
    return sum(_cpu(stats[p]) for p in _tree(pid, stats) if p in stats)


def others_cpu() -> dict[int, float]:
    """CPU seconds so far of every user process outside this benchmark's process tree.

    The difference of two readings (`others_used`) is a lower bound of what other work on
    the machine took meanwhile: processes alive at the second reading count from the
    first (or from their start), those that ended in between are missed. Children's
    cutime is left out on purpose: a parent reaping a long-lived child would add its
    whole life at once. Kernel threads are left out too: they do the benchmark's own
    network work (softirq).
    """
    stats = _processes()
    ours = _tree(os.getpid(), stats)
    return {
        pid: _cpu(fields)
        for pid, fields in stats.items()
        if pid not in ours and pid != 2 and fields[1] != "2"  # kthreadd and its threads
    }


def others_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


CoreTimes = dict[str, tuple[int, int]]  # core -> (busy ticks, all ticks)


def core_times() -> CoreTimes:
    """Busy and total ticks per core from /proc/stat (idle and iowait count as not busy)."""
    times: CoreTimes = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            times[name[3:]] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return times


def busy_share(before: CoreTimes, after: CoreTimes, core: str) -> float:
    """Fraction of the interval `core` was busy (0..1)."""
    busy = after[core][0] - before[core][0]
    total = after[core][1] - before[core][1]
    return busy / total if total > 0 else math.nan


def background_load(seconds: float = 1.0) -> dict[str, float]:
    """How busy each core is before the benchmark starts anything (0..1 per core)."""
    before = core_times()
    time.sleep(seconds)
    after = core_times()
    return {core: busy_share(before, after, core) for core in before}
