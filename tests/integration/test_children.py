"""mesh.node.children and .supervisor: real children stopped in order, restarted, orphaned."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from manual_clock import ManualClock
from mesh_procs import alive

from mesh.node.children import CANNOT_START, Child, how_it_ended, stop
from mesh.node.supervisor import Restart, Supervisor

REPO = Path(__file__).resolve().parents[2]


def python(label: str, code: str, **options: object) -> Child:
    return Child(label, [sys.executable, "-c", code], **options)  # type: ignore[arg-type]


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# On SIGTERM: wait `delay`, append the label to `path`, exit. Prints "ready" once armed.
ON_TERM = """
import signal, sys, time
def term(*_):
    time.sleep({delay})
    with open({path!r}, "a") as f:
        f.write({label!r} + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
time.sleep(60)
"""


def armed(child: Child) -> bool:
    assert child.log is not None
    return child.log.exists() and "ready" in child.log.read_text()


def test_groups_stop_one_after_the_other(tmp_path: Path) -> None:
    order = tmp_path / "order"
    first = python(
        "agent",
        ON_TERM.format(delay=0.3, path=str(order), label="agent"),
        log=tmp_path / "agent.log",
    )
    second = python(
        "nats", ON_TERM.format(delay=0, path=str(order), label="nats"), log=tmp_path / "nats.log"
    )
    for child in (first, second):
        child.start()
    wait_until(lambda: armed(first) and armed(second))
    stop([[first], [second]], grace=5.0)
    # In parallel, the slow first one would have written last.
    assert order.read_text().split() == ["agent", "nats"]
    assert (first.returncode, second.returncode) == (0, 0)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = python(
        "stubborn",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)",
        log=tmp_path / "stubborn.log",
    )
    stubborn.start()
    wait_until(lambda: armed(stubborn))
    began = time.monotonic()
    stop([[stubborn]], grace=0.3)
    assert time.monotonic() - began >= 0.3
    assert stubborn.returncode == -signal.SIGKILL
    assert how_it_ended(-signal.SIGKILL) == "was killed by SIGKILL"


def test_a_child_of_its_own_session_is_stopped_with_its_children(tmp_path: Path) -> None:
    parent = python(
        "nginx-like",
        "import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
        "print(p.pid, flush=True); time.sleep(60)",
        log=tmp_path / "parent.log",
        own_session=True,
    )
    parent.start()
    wait_until(lambda: parent.tail().strip().isdigit())
    grandchild = int(parent.tail())
    assert alive(grandchild)
    stop([[parent]], grace=5.0)
    wait_until(lambda: not alive(grandchild))


def test_a_child_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # An intermediate process starts a Child, then is killed as a crash would.
    code = (
        "import sys, time; from mesh.node.children import Child; "
        "c = Child('sleeper', ['sleep', '60']); c.start(); print(c.pid, flush=True); time.sleep(60)"
    )
    middle = python(
        "middle", code, log=tmp_path / "middle.log", env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    middle.start()
    wait_until(lambda: middle.tail().strip().isdigit(), timeout=10)
    sleeper = int(middle.tail())
    assert alive(sleeper)
    middle.kill()
    wait_until(lambda: not alive(sleeper))


def test_a_dying_child_comes_back_later_each_time_until_it_has_settled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(now=0.0)
    supervisor = Supervisor(clock=clock)
    crasher = supervisor.start(
        python("crasher", "raise SystemExit(3)"), Restart(first=1.0, cap=4.0, settled=10.0)
    )
    delays = []
    with caplog.at_level(logging.WARNING, logger="mesh.node.supervisor"):
        # Each start dies at once; the last start (at 11) is seen dead only 14 s later.
        for dies_at in (0.0, 1.0, 3.0, 7.0, 25.0):
            clock.now = dies_at
            crasher.wait(10)
            assert supervisor.poll() is None
            assert supervisor.poll() is None  # once scheduled, not again
            delays.append(float(caplog.records[-1].getMessage().rsplit(" in ", 1)[1][:-2]))
            pid = crasher.pid
            clock.now = dies_at + delays[-1] - 0.01
            assert supervisor.poll() is None
            assert crasher.pid == pid  # not yet due
            clock.now = dies_at + delays[-1]
            assert supervisor.poll() is None
            assert crasher.pid != pid  # restarted
    assert delays == [1.0, 2.0, 4.0, 4.0, 1.0]
    assert "crasher exited with code 3; restarting in 1 s" in caplog.text
    crasher.wait(10)


def test_cannot_start_and_no_restart_end_for_good() -> None:
    supervisor = Supervisor()
    hopeless = supervisor.start(python("hopeless", f"raise SystemExit({CANNOT_START})"), Restart())
    hopeless.wait(10)
    assert supervisor.poll() is hopeless
    once = Supervisor()
    done = once.start(python("once", "pass"))
    done.wait(10)
    assert once.poll() is done


async def test_watch_returns_what_ended_or_nothing_on_stop() -> None:
    supervisor = Supervisor()
    sleeper = supervisor.start(Child("sleeper", ["sleep", "60"]))
    until = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, until.set)
    assert await supervisor.watch(until, every=0.02) is None
    sleeper.kill()
    assert await supervisor.watch(asyncio.Event(), every=0.02) is sleeper
