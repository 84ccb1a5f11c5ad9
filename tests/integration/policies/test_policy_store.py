"""The policy CLI (run in this process) and store against a real JetStream bucket."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import nats
import pytest
from mesh_cli import policy
from nats.js.errors import NotFoundError

from mesh import subjects
from mesh.bus import NatsBus
from mesh.config import load as load_settings
from mesh.errors import Conflict
from mesh.forwarding.defaults import default_service
from mesh.playground.natsserver import NatsServer
from policies.loader import load
from policies.plan import plan
from policies.store import PolicyStore
from policies.sync import sync

EXAMPLES = Path(__file__).parents[3] / "policies" / "examples"

HELLO_V2 = """\
kind: Service
name: frontend
timeouts: {connect: 2s, request: 5s}
"""


async def _drop_bucket(url: str) -> None:
    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=3)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_key_value(subjects.POLICY_BUCKET)
    finally:
        await client.close()


@pytest.fixture
def url(nats_server: NatsServer) -> str:
    """The session server, with no policy bucket: each test starts from an empty store."""
    asyncio.run(_drop_bucket(nats_server.url))
    return nats_server.url


async def store_for(url: str) -> tuple[NatsBus, PolicyStore]:
    bus = NatsBus(load_settings(nats_url=url), name="test")
    await bus.start(wait=5)
    store = PolicyStore(bus)
    await store.open()
    return bus, store


def test_apply_writes_changed_keys_only_and_reports_no_changes_the_second_time(
    url: str,
) -> None:
    first = policy(url, "apply", "-f", str(EXAMPLES / "hello.yaml"))
    assert first.returncode == 0, first.stderr
    assert "wrote route.hello revision" in first.stdout
    assert "wrote service.frontend revision" in first.stdout
    assert "+kind: Route" in first.stdout  # the diff
    again = policy(url, "apply", "-f", str(EXAMPLES / "hello.yaml"))
    assert again.returncode == 0
    assert "no changes" in again.stdout
    assert "wrote" not in again.stdout


def test_invalid_documents_are_never_written(url: str, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HELLO_V2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nname: other\nretries: {attempts: many}\n")
    result = policy(url, "apply", "-f", str(tmp_path))
    assert result.returncode == 1
    assert "bad.yaml[0] retries.attempts = 'many'" in result.stderr
    listed = policy(url, "list")
    assert "service.frontend" not in listed.stdout  # all or nothing


def test_dry_run_and_diff_write_nothing(url: str) -> None:
    for verb in (["apply", "--dry-run"], ["diff"]):
        result = policy(url, *verb, "-f", str(EXAMPLES / "hello.yaml"))
        assert result.returncode == 0, result.stderr
        assert "create route.hello" in result.stdout
    assert "route.hello" not in policy(url, "list").stdout


async def test_a_concurrent_change_makes_the_second_write_fail(url: str, tmp_path: Path) -> None:
    applied = await asyncio.to_thread(policy, url, "apply", "-f", str(EXAMPLES / "hello.yaml"))
    assert applied.returncode == 0
    (tmp_path / "v2.yaml").write_text(HELLO_V2)
    bus, store = await store_for(url)
    try:
        # Both appliers read the same revision...
        loaded = load(tmp_path, defaults=default_service(load_settings()))
        stale = plan(loaded.documents, await store.stored(), prune=False)
        assert [c.key for c in stale] == ["service.frontend"]
        # ...one of them writes first...
        await store.write(stale)
        # ...and the other's compare-and-set fails instead of overwriting it.
        with pytest.raises(Conflict, match=r"service\.frontend changed since revision"):
            await store.write(stale)
    finally:
        await bus.close()


def test_history_and_rollback_restore_an_earlier_revision_as_a_new_one(
    url: str, tmp_path: Path
) -> None:
    assert policy(url, "apply", "-f", str(EXAMPLES / "hello.yaml")).returncode == 0
    (tmp_path / "v2.yaml").write_text(HELLO_V2)
    assert policy(url, "apply", "-f", str(tmp_path)).returncode == 0
    history = policy(url, "history", "frontend").stdout.splitlines()[1:]
    revisions = [int(line.split()[0]) for line in history]
    assert len(revisions) == 2
    assert "connect: 2s" in policy(url, "get", "frontend").stdout
    back = policy(url, "rollback", "frontend", "--to", str(revisions[0]))
    assert back.returncode == 0, back.stderr
    assert "-  connect: 2s" in back.stdout
    assert "+  connect: 1s" in back.stdout
    now = policy(url, "get", "frontend").stdout
    assert "connect: 1s" in now
    assert len(policy(url, "history", "frontend").stdout.splitlines()[1:]) == 3
    old = policy(url, "get", "frontend", "--rev", str(revisions[1])).stdout
    assert "connect: 2s" in old


def test_delete_removes_a_policy(url: str) -> None:
    assert policy(url, "apply", "-f", str(EXAMPLES / "hello.yaml")).returncode == 0
    assert policy(url, "delete", "route/hello").returncode == 0
    assert "route.hello" not in policy(url, "list").stdout
    assert policy(url, "delete", "route/hello").returncode == 2


async def test_sync_watch_follows_a_folder_and_prunes_only_when_asked(
    url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "hello.yaml").write_text((EXAMPLES / "hello.yaml").read_text())
    bus, store = await store_for(url)
    output, stop = io.StringIO(), asyncio.Event()

    async def listed() -> set[str]:
        return set(await store.stored())

    async def until(*, key: str, present: bool) -> None:
        for _ in range(400):  # 20 s
            if (key in await listed()) == present:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key} {'never' if present else 'still'} in the bucket")

    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        watcher = asyncio.create_task(
            sync(
                store,
                str(folder),
                defaults=default_service(load_settings()),
                watch=True,
                prune=True,
                debounce=0.3,
                stop=stop,
            )
        )
        try:
            await until(key="route.hello", present=True)
            (folder / "v2.yaml").write_text(HELLO_V2.replace("frontend", "extra"))
            await until(key="service.extra", present=True)
            (folder / "v2.yaml").unlink()
            await until(key="service.extra", present=False)
            (folder / "broken.yaml").write_text("kind: Route\nname: x\nto: nope\n")
            for _ in range(400):
                if "not synced" in output.getvalue():
                    break
                await asyncio.sleep(0.05)
            assert "route.hello" in await listed()  # an invalid folder changes nothing
        finally:
            stop.set()
            assert await asyncio.wait_for(watcher, 5) == 0
            await bus.close()
    assert "not synced" in output.getvalue()


def test_sync_without_prune_keeps_keys_whose_files_are_gone(url: str, tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text((EXAMPLES / "hello.yaml").read_text())
    assert policy(url, "sync", str(tmp_path)).returncode == 0
    (tmp_path / "hello.yaml").unlink()
    (tmp_path / "other.yaml").write_text(HELLO_V2)
    assert policy(url, "sync", str(tmp_path)).returncode == 0
    assert "route.hello" in policy(url, "list").stdout
