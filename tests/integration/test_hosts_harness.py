"""The namespace harness itself: what it leaves behind, and what it sweeps."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hosts import PREFIX, Hosts, Unavailable, check_available, sweep


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    try:
        check_available()
    except Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split(" ", 1)[0] for line in listed.stdout.splitlines()}


def test_a_dead_runs_namespaces_are_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    dead = f"{PREFIX}999999999-leftover"  # above any pid_max: that run is gone
    subprocess.run(["ip", "netns", "add", dead], check=True)
    with Hosts(["one"], tmp_path) as hosts:
        assert dead in sweep()
        assert hosts["one"].namespace in namespaces()
    assert not {dead, hosts["one"].namespace, hosts.bridge} & namespaces()


def test_a_topology_that_fails_halfway_leaves_no_namespace(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="File exists"):
        Hosts(["twin", "twin"], tmp_path)
    assert not [n for n in namespaces() if n.startswith(f"{PREFIX}{os.getpid()}-")]
