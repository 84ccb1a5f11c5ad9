"""Callgrind's instruction counts: a process run under it, counting switched on and off."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.console import BenchError

# glibc's copy and fill routines (`__memmove_avx_unaligned_erms` and kin): they copy with
# `rep movsb`, which valgrind counts once per byte, not once per instruction as the
# processor runs it, so their counts say how many bytes moved, not what they cost.
COPIES = re.compile(r"mem(p?cpy|move|set)")
_COST = re.compile(r"[0-9+*-]")  # a cost line starts with its position: 12, +3, -1, *


@dataclass(frozen=True, slots=True)
class Counts:
    """Instructions counted while counting was on: all of them, and the copies' share."""

    total: int
    copies: int

    @property
    def without_copies(self) -> int:
        return self.total - self.copies


def under_callgrind(command: Sequence[str], valgrind: str, out: Path) -> list[str]:
    """`command` run by callgrind with counting off until `counting` switches it on."""
    return [
        valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *command,
    ]


@contextlib.contextmanager
def counting(control: str, pid: int) -> Iterator[None]:
    """Count what process `pid` (under callgrind) runs inside the `with` block only."""
    _control(control, "on", pid)
    try:
        yield
    finally:
        _control(control, "off", pid)


def _control(control: str, switch: str, pid: int) -> None:
    done = subprocess.run(
        [control, "-i", switch, str(pid)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"callgrind_control -i {switch} {pid}: {done.stdout}{done.stderr}")


def version(valgrind: str) -> str:
    """`valgrind --version` (its `-v` wants a program to run)."""
    done = subprocess.run([valgrind, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def parse(text: str) -> Counts:
    """A callgrind output file's first event (Ir: instructions): its total, and the self
    cost of the functions COPIES names. Fails on a file that has no total."""
    names: dict[str, str] = {}  # compressed `(id)` -> function name
    positions, total, copies = 1, None, 0
    copying = after_call = False
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("fn", "cfn"):
            name = _name(names, value)
            if key == "fn":
                copying = bool(COPIES.search(name))
        elif key == "calls":
            after_call = True  # the next cost line is the call's inclusive cost
        elif line.startswith("positions:"):
            positions = len(line.split()) - 1
        elif line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
        elif _COST.match(line):
            if copying and not after_call:
                copies += int(line.split()[positions])
            after_call = False
    if total is None:
        raise BenchError("callgrind wrote no total: did counting ever switch on?")
    return Counts(total, copies)


def _name(names: dict[str, str], value: str) -> str:
    """`(12) name` defines id 12, `(12)` uses it, a plain name is itself."""
    if not value.startswith("("):
        return value
    ident, _, name = value.partition(")")
    if name:
        names[ident] = name.strip()
    return names.get(ident, "")
