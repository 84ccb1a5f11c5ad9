"""mesh.playground.natsserver: finding the binary; a real server that starts, stops, restarts."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
import stat
import uuid
from pathlib import Path

import nats
import pytest
from helpers import NonLoopbackSocket
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType, StreamConfig

from mesh.errors import NatsServerError
from mesh.node.ports import free_port
from mesh.playground.natsserver import EXE, NatsServer, _wheel_candidates, find_binary


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def roundtrip(client: Client, subject: str) -> bytes:
    sub = await client.subscribe(subject)
    await client.publish(subject, b"ping")
    msg = await sub.next_msg(timeout=2)
    await sub.unsubscribe()
    return msg.data


# --- the fixtures' servers ------------------------------------------------------------------


async def test_session_server_accepts_a_client(nats_server: NatsServer, nc: Client) -> None:
    assert nats_server.url.startswith("nats://127.0.0.1:")
    assert nats_server.running
    assert await roundtrip(nc, unique("test.natsserver")) == b"ping"


async def test_jetstream_stores_and_serves_messages(nc: Client) -> None:
    js = nc.jetstream()
    name = unique("TEST")
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
    try:
        ack = await js.publish(f"{name}.a", b"hello")
        assert ack.stream == name
        stored = await js.get_msg(name, ack.seq)
        assert stored.data == b"hello"
    finally:
        await js.delete_stream(name)


async def test_kill_and_restart_on_the_same_port_lets_clients_reconnect(
    fresh_nats: NatsServer,
) -> None:
    disconnected, reconnected = asyncio.Event(), asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    client = await nats.connect(
        fresh_nats.url,
        reconnect_time_wait=0.1,  # type: ignore[arg-type]  # nats-py annotates it as int
        max_reconnect_attempts=-1,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    try:
        js = client.jetstream()
        await js.add_stream(
            StreamConfig(name="KEEP", subjects=["keep.>"], storage=StorageType.FILE)
        )
        await js.publish("keep.a", b"survives")
        url, store = fresh_nats.url, fresh_nats.store_dir

        fresh_nats.kill()
        assert not fresh_nats.running
        await asyncio.wait_for(disconnected.wait(), 5)
        fresh_nats.restart()
        await asyncio.wait_for(reconnected.wait(), 10)

        assert (fresh_nats.url, fresh_nats.store_dir) == (url, store)
        assert await roundtrip(client, "after.restart") == b"ping"
        assert (await js.get_msg("KEEP", 1)).data == b"survives"  # same store dir
    finally:
        await client.close()


def test_restart_of_a_running_server_keeps_the_port(fresh_nats: NatsServer) -> None:
    url, pid = fresh_nats.url, fresh_nats.pid
    fresh_nats.restart()
    assert fresh_nats.url == url
    assert fresh_nats.pid != pid
    assert fresh_nats.running


# --- lifecycle ------------------------------------------------------------------------------


async def test_the_context_manager_removes_its_temporary_store(nats_binary: str) -> None:
    with NatsServer(nats_binary, jetstream=False) as server:  # started on the loop's thread
        store = server.store_dir
        assert store is not None
        assert store.is_dir()
        client = await nats.connect(server.url)
        await client.close()
    assert not server.running
    assert not store.exists()


def test_keep_leaves_the_store_and_its_log(nats_binary: str) -> None:
    server = NatsServer(nats_binary, keep=True)
    server.start()
    store, log = server.store_dir, server.log_path
    server.stop()
    try:
        assert log is not None
        assert "Server is ready" in log.read_text()
    finally:
        assert store is not None
        shutil.rmtree(store)


def test_a_given_port_and_store_dir_are_used(nats_binary: str, tmp_path: Path) -> None:
    port = free_port()
    server = NatsServer(nats_binary, port=port, store_dir=tmp_path)
    server.start()
    try:
        assert server.url == f"nats://127.0.0.1:{port}"
        assert (tmp_path / "jetstream").is_dir()
    finally:
        server.stop()
    assert tmp_path.is_dir()  # a given store dir is the caller's: never removed


def test_port_in_use_fails_with_the_servers_own_words(
    nats_binary: str, fresh_nats: NatsServer, tmp_path: Path
) -> None:
    rival = NatsServer(nats_binary, port=fresh_nats.port, store_dir=tmp_path)
    with pytest.raises(NatsServerError, match="address already in use"):
        rival.start(timeout=10)
    assert not rival.running
    assert fresh_nats.running


def test_bad_arguments_fail_with_the_log_tail(nats_binary: str, tmp_path: Path) -> None:
    server = NatsServer(nats_binary, store_dir=tmp_path, extra_args=["--no-such-flag"])
    with pytest.raises(NatsServerError, match="no-such-flag"):
        server.start()


def test_a_binary_that_never_gets_ready_times_out(tmp_path: Path) -> None:
    fake = executable(tmp_path / "bin" / EXE, "sleep 30")
    readings = itertools.count(0.0, 1.0)  # the clock moves a second at each reading
    server = NatsServer(str(fake), store_dir=tmp_path / "store", clock=lambda: next(readings))
    with pytest.raises(NatsServerError, match="not ready in time"):
        server.start(timeout=3.0)
    assert not server.running
    assert next(readings) < 10  # given up after about three readings, not sooner or later


def test_start_kill_restart_and_stop(nats_binary: str) -> None:
    server = NatsServer(nats_binary)
    server.start()
    try:
        port, pid = server.port, server.pid
        server.kill()
        server.restart()
        assert (server.port, server.running) == (port, True)
        assert server.pid != pid
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            assert sock.recv(6) == b"INFO {"
    finally:
        server.stop()
    assert not server.running


def test_a_server_outlives_the_event_loop_that_started_it(nats_binary: str) -> None:
    # The session-wide server is started once and serves every test's loop.
    async def start() -> NatsServer:
        server = NatsServer(nats_binary, jetstream=False)
        server.start()
        return server

    server = asyncio.run(start())
    try:
        assert server.running
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            assert sock.recv(6) == b"INFO {"
    finally:
        server.stop()


def test_unstarted_server_has_no_url(nats_binary: str) -> None:
    with pytest.raises(NatsServerError, match="start it first"):
        _ = NatsServer(nats_binary).url


# --- find_binary ----------------------------------------------------------------------------


def executable(path: Path, body: str = "exit 0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_explicit_setting_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = executable(tmp_path / "path" / EXE)
    chosen = executable(tmp_path / "chosen" / "my-nats")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_binary(str(chosen)) == str(chosen)


def test_path_wins_over_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = executable(tmp_path / "path" / EXE)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_binary(None) == str(on_path)


def test_the_wheel_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    found = Path(find_binary(None))
    assert found in _wheel_candidates()
    assert found.name == EXE


def test_a_missing_explicit_path_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executable(tmp_path / "path" / EXE)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))  # no silent fallback to this one
    with pytest.raises(NatsServerError, match="MESH_NATS_SERVER_BIN"):
        find_binary(str(tmp_path / "missing" / EXE))


def test_a_non_executable_explicit_path_is_an_error(tmp_path: Path) -> None:
    plain = tmp_path / EXE
    plain.write_text("not a program")
    with pytest.raises(NatsServerError, match="not an executable"):
        find_binary(str(plain))


def test_no_binary_anywhere_names_what_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(
        "mesh.playground.natsserver._wheel_candidates", lambda: [tmp_path / "nope" / EXE]
    )
    with pytest.raises(NatsServerError, match="none on PATH") as info:
        find_binary(None)
    assert str(tmp_path / "nope" / EXE) in str(info.value)


# --- the loopback-only rule (tests/conftest.py) ---------------------------------------------


@pytest.mark.parametrize("address", [("0.0.0.0", 0), ("", 0), ("::", 0), ("10.1.2.3", 0)])
def test_binding_outside_loopback_is_refused(address: tuple[str, int]) -> None:
    family = socket.AF_INET6 if address[0] == "::" else socket.AF_INET
    with socket.socket(family) as sock, pytest.raises(NonLoopbackSocket):
        sock.bind(address)


@pytest.mark.parametrize("address", [("10.1.2.3", 80), ("8.8.8.8", 53), ("example.com", 80)])
def test_connecting_outside_loopback_is_refused(address: tuple[str, int]) -> None:
    with socket.socket() as sock, pytest.raises(NonLoopbackSocket):
        sock.connect(address)


def test_loopback_is_allowed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[0] == "127.0.0.1"


# --- deploy/nats/permissions.conf on a real server ------------------------------------------

PERMISSIONS = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "permissions.conf"
PASSWORDS = {"agent": "agent-pw", "gateway": "gateway-pw", "admin": "admin-pw"}


async def test_deploy_permissions_let_agents_read_but_not_write_policies(
    nats_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for role, password in PASSWORDS.items():  # the server reads them from its environment
        monkeypatch.setenv(f"MESH_{role.upper()}_PASSWORD", password)
    monkeypatch.setenv("MESH_PRESENCE_PASSWORD", "presence-pw")
    shutil.copy(PERMISSIONS, tmp_path)  # includes resolve beside the including file
    (tmp_path / "server.conf").write_text("include ./permissions.conf\n")
    denied: list[str] = []

    async def on_error(exc: Exception) -> None:
        denied.append(str(exc))

    with NatsServer(
        nats_binary, store_dir=tmp_path / "store", config_file=tmp_path / "server.conf"
    ) as server:
        clients = {
            role: await nats.connect(server.url, user=role, password=pw, error_cb=on_error)
            for role, pw in PASSWORDS.items()
        }
        try:
            admin_js = clients["admin"].jetstream()
            admin_kv = await admin_js.create_key_value(KeyValueConfig(bucket="mesh_policies"))
            await admin_kv.put("Service.hello", b"v1")
            agent_kv = await clients["agent"].jetstream().key_value("mesh_policies")
            assert (await agent_kv.get("Service.hello")).value == b"v1"
            watcher = await agent_kv.watchall(include_history=False)
            while await watcher.updates(timeout=2) is not None:  # current values, then None
                pass
            await admin_kv.put("Service.hello", b"v2")
            update = await watcher.updates(timeout=2)
            assert update is not None
            assert update.value == b"v2"
            await watcher.stop()

            agent = clients["agent"]
            await agent.publish("mesh.v1.hb.hello.i1", b"{}")
            await agent.publish("$KV.mesh_policies.Service.hello", b"forged")
            await agent.flush()
            await asyncio.sleep(0.2)  # the server reports violations asynchronously
            assert any("mesh_policies" in d.lower() for d in denied)
            assert not any("mesh.v1.hb" in d for d in denied)
            assert (await admin_kv.get("Service.hello")).value == b"v2"

            js = clients["gateway"].jetstream()  # the gateway sets up the event log
            await js.add_stream(StreamConfig(name="MESH_EVENTS", subjects=["mesh.v1.events.>"]))
            await js.update_stream(
                StreamConfig(name="MESH_EVENTS", subjects=["mesh.v1.events.>"], max_age=60)
            )

            # The presence user (system account) hears the mesh account's clients go.
            presence = await nats.connect(server.url, user="presence", password="presence-pw")
            closes = await presence.subscribe("$SYS.ACCOUNT.MESH.DISCONNECT")
            await presence.flush()
            await clients.pop("agent").close()
            advisory = json.loads((await closes.next_msg(timeout=2)).data)
            assert advisory["client"]["user"] == "agent"
            await presence.close()
        finally:
            for client in clients.values():
                await client.close()
