"""What processes cost while the benchmark watches: CPU per wall second, resident memory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from bench.cpu import process_cpu


def resident_bytes(pid: int) -> int:
    """VmRSS of `pid` (its resident set), from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise OSError(f"/proc/{pid}/status has no VmRSS")


def cpu_shares(pids: Mapping[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per wall second of each process (and its children) over `seconds`:
    1.0 is one core kept busy."""
    before = {label: process_cpu(pid) for label, pid in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    after = {label: process_cpu(pid) for label, pid in pids.items()}
    wall = time.monotonic() - started
    return {label: (after[label] - before[label]) / wall for label in pids}
