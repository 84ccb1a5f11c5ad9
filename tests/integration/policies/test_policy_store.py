"""The policy CLI and store against a real JetStream bucket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.bus import NatsBus
from mesh.config import load as load_settings
from mesh.errors import Conflict
from mesh.playground.natsserver import NatsServer
from policies.loader import load
from policies.plan import plan
from policies.store import PolicyStore

EXAMPLES = Path(__file__).parents[3] / "policies" / "examples"

HELLO_V2 = """\
kind: Service
name: frontend
timeouts: {connect: 2s, request: 5s}
"""


def mesh(nats: NatsServer, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh", "policy", *args],
        env={**os.environ, "MESH_NATS_URL": nats.url},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def store_for(nats: NatsServer) -> tuple[NatsBus, PolicyStore]:
    bus = NatsBus(load_settings(nats_url=nats.url), name="test")
    await bus.start(wait=5)
    store = PolicyStore(bus)
    await store.open()
    return bus, store


def test_apply_writes_changed_keys_only_and_reports_no_changes_the_second_time(
    fresh_nats: NatsServer,
) -> None:
    first = mesh(fresh_nats, "apply", "-f", str(EXAMPLES / "hello.yaml"))
    assert first.returncode == 0, first.stderr
    assert "wrote route.hello revision" in first.stdout
    assert "wrote service.frontend revision" in first.stdout
    assert "+kind: Route" in first.stdout  # the diff
    again = mesh(fresh_nats, "apply", "-f", str(EXAMPLES / "hello.yaml"))
    assert again.returncode == 0
    assert "no changes" in again.stdout
    assert "wrote" not in again.stdout


def test_invalid_documents_are_never_written(fresh_nats: NatsServer, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HELLO_V2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nname: other\nretries: {attempts: many}\n")
    result = mesh(fresh_nats, "apply", "-f", str(tmp_path))
    assert result.returncode == 1
    assert "bad.yaml[0] retries.attempts = 'many'" in result.stderr
    listed = mesh(fresh_nats, "list")
    assert "service.frontend" not in listed.stdout  # all or nothing


def test_dry_run_and_diff_write_nothing(fresh_nats: NatsServer) -> None:
    for verb in (["apply", "--dry-run"], ["diff"]):
        result = mesh(fresh_nats, *verb, "-f", str(EXAMPLES / "hello.yaml"))
        assert result.returncode == 0, result.stderr
        assert "create route.hello" in result.stdout
    assert "route.hello" not in mesh(fresh_nats, "list").stdout


async def test_a_concurrent_change_makes_the_second_write_fail(
    fresh_nats: NatsServer, tmp_path: Path
) -> None:
    assert mesh(fresh_nats, "apply", "-f", str(EXAMPLES / "hello.yaml")).returncode == 0
    (tmp_path / "v2.yaml").write_text(HELLO_V2)
    bus, store = await store_for(fresh_nats)
    try:
        # Both appliers read the same revision...
        stale = plan(load(tmp_path).documents, await store.stored(), prune=False)
        assert [c.key for c in stale] == ["service.frontend"]
        # ...one of them writes first...
        await store.write(stale)
        # ...and the other's compare-and-set fails instead of overwriting it.
        with pytest.raises(Conflict, match=r"service\.frontend changed since revision"):
            await store.write(stale)
    finally:
        await bus.close()


def test_history_and_rollback_restore_an_earlier_revision_as_a_new_one(
    fresh_nats: NatsServer, tmp_path: Path
) -> None:
    assert mesh(fresh_nats, "apply", "-f", str(EXAMPLES / "hello.yaml")).returncode == 0
    (tmp_path / "v2.yaml").write_text(HELLO_V2)
    assert mesh(fresh_nats, "apply", "-f", str(tmp_path)).returncode == 0
    history = mesh(fresh_nats, "history", "frontend").stdout.splitlines()[1:]
    revisions = [int(line.split()[0]) for line in history]
    assert len(revisions) == 2
    assert "connect: 2.0" in mesh(fresh_nats, "get", "frontend").stdout
    back = mesh(fresh_nats, "rollback", "frontend", "--to", str(revisions[0]))
    assert back.returncode == 0, back.stderr
    assert "-  connect: 2.0" in back.stdout
    assert "+  connect: 1.0" in back.stdout
    now = mesh(fresh_nats, "get", "frontend").stdout
    assert "connect: 1.0" in now
    assert len(mesh(fresh_nats, "history", "frontend").stdout.splitlines()[1:]) == 3
    old = mesh(fresh_nats, "get", "frontend", "--rev", str(revisions[1])).stdout
    assert "connect: 2.0" in old


def test_delete_removes_a_policy(fresh_nats: NatsServer) -> None:
    assert mesh(fresh_nats, "apply", "-f", str(EXAMPLES / "hello.yaml")).returncode == 0
    assert mesh(fresh_nats, "delete", "route/hello").returncode == 0
    assert "route.hello" not in mesh(fresh_nats, "list").stdout
    assert mesh(fresh_nats, "delete", "route/hello").returncode == 2


def test_sync_watch_follows_a_folder_and_prunes_only_when_asked(
    fresh_nats: NatsServer, tmp_path: Path
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "hello.yaml").write_text((EXAMPLES / "hello.yaml").read_text())
    env = {**os.environ, "MESH_NATS_URL": fresh_nats.url}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mesh", "policy", "sync", str(folder), "--watch", "--prune"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def listed() -> str:
            return mesh(fresh_nats, "list").stdout

        deadline = time.monotonic() + 20
        while "route.hello" not in listed():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (folder / "v2.yaml").write_text(HELLO_V2.replace("frontend", "extra"))
        while "service.extra" not in listed():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (folder / "v2.yaml").unlink()
        while "service.extra" in listed():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (folder / "broken.yaml").write_text("kind: Route\nname: x\nto: nope\n")
        time.sleep(1.5)
        assert "route.hello" in listed()  # an invalid folder changes nothing
    finally:
        watcher.terminate()
        output = watcher.communicate(timeout=10)[0]
    assert "not synced" in output


def test_sync_without_prune_keeps_keys_whose_files_are_gone(
    fresh_nats: NatsServer, tmp_path: Path
) -> None:
    (tmp_path / "hello.yaml").write_text((EXAMPLES / "hello.yaml").read_text())
    assert mesh(fresh_nats, "sync", str(tmp_path)).returncode == 0
    (tmp_path / "hello.yaml").unlink()
    (tmp_path / "other.yaml").write_text(HELLO_V2)
    assert mesh(fresh_nats, "sync", str(tmp_path)).returncode == 0
    assert "route.hello" in mesh(fresh_nats, "list").stdout
