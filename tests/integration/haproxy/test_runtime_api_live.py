"""mesh.haproxy.runtime_api against the real HAProxy: batches, refusals, and the parsers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from haproxy_config import needs_haproxy
from haproxy_fixtures import BINARY, config

from mesh.errors import RuntimeApiError
from mesh.haproxy.process import HaproxyProcess
from mesh.haproxy.show_answers import processes, servers_state, stat_rows
from mesh.node.ports import free_port

pytestmark = needs_haproxy


@pytest.fixture
async def haproxy() -> AsyncIterator[HaproxyProcess]:
    assert BINARY is not None
    text = config(free_port(), free_port())  # the static server: nothing listens there
    process = HaproxyProcess(BINARY, config=lambda: text, on_crash=print)
    await process.start(text)
    yield process
    await process.stop()


async def test_a_batch_adds_and_sets_servers_seen_in_servers_state(
    haproxy: HaproxyProcess,
) -> None:
    answers = await haproxy.stats.apply(
        [
            "add server hello/a 127.0.0.1:7001 weight 10",
            "add server hello/b 127.0.0.1:7002 weight 20",
            "set server hello/a state ready",
            "set server hello/b state drain",
            "set server hello/up state maint",
        ]
    )
    assert answers == ["New server registered.", "New server registered.", "", "", ""]
    state = servers_state((await haproxy.stats.run(["show servers state hello"]))[0])
    hello = state["hello"]
    assert (hello["a"].address, hello["a"].port, hello["a"].weight) == ("127.0.0.1", 7001, 10)
    assert {name: row.state for name, row in hello.items()} == {
        "up": "maint",
        "a": "ready",
        "b": "drain",
    }
    assert hello["a"].op_state == "running"  # no checks: HAProxy takes it as up


async def test_a_refused_command_names_itself_and_haproxys_answer(
    haproxy: HaproxyProcess,
) -> None:
    await haproxy.stats.apply(["add server hello/a 127.0.0.1:7001"])
    with pytest.raises(RuntimeApiError) as refused:
        await haproxy.stats.apply(
            [
                "add server hello/a 127.0.0.1:7001",
                "set server hello/ghost weight 3",
                "set server hello/a weight 3",  # still applied: HAProxy goes on
            ]
        )
    assert str(refused.value) == (
        "haproxy refused 'add server hello/a 127.0.0.1:7001': Already exists a server with "
        "the same name in backend. (and 1 more commands failed)"
    )
    weights = servers_state((await haproxy.stats.run(["show servers state hello"]))[0])
    assert weights["hello"]["a"].weight == 3


async def test_a_server_is_deleted_only_from_maintenance(haproxy: HaproxyProcess) -> None:
    # HAProxy adds a server in maintenance: it takes traffic once set ready.
    await haproxy.stats.apply(["add server hello/a 127.0.0.1:7001"])
    state = servers_state((await haproxy.stats.run(["show servers state hello"]))[0])
    assert state["hello"]["a"].state == "maint"
    await haproxy.stats.apply(["set server hello/a state ready"])
    with pytest.raises(RuntimeApiError, match="haproxy refused 'del server hello/a'"):
        await haproxy.stats.apply(["del server hello/a"])
    answers = await haproxy.stats.apply(["set server hello/a state maint", "del server hello/a"])
    assert answers == ["", "Server deleted."]


async def test_stat_and_proc_parse_from_the_live_answers(haproxy: HaproxyProcess) -> None:
    rows = stat_rows((await haproxy.stats.run(["show stat"]))[0])
    assert [(row["pxname"], row["svname"]) for row in rows] == [
        ("fe", "FRONTEND"),
        ("hello", "up"),
        ("hello", "BACKEND"),
    ]
    assert rows[1]["addr"].startswith("127.0.0.1:")
    shown = processes((await haproxy.master.run(["show proc"]))[0])
    assert shown.master == haproxy.pid
    assert len(shown.workers) == 1
    assert (shown.reloads, shown.failed_reloads, shown.old_workers) == (0, 0, ())


async def test_a_thousand_weights_in_one_batch(haproxy: HaproxyProcess) -> None:
    await haproxy.stats.apply(["add server hello/a 127.0.0.1:7001"])
    commands = [f"set server hello/a weight {1 + i % 256}" for i in range(1000)]
    started = time.perf_counter()
    answers = await haproxy.stats.apply(commands)
    took = time.perf_counter() - started
    assert answers == [""] * 1000
    print(f"1,000 `set server ... weight` in one batch: {took * 1000:.1f} ms")
    assert took < 2.0  # about 10 ms here; the bound only catches one-connection-each


async def test_a_missing_socket_is_a_runtime_api_error(haproxy: HaproxyProcess) -> None:
    await haproxy.stop()
    with pytest.raises(
        RuntimeApiError, match=r"cannot reach haproxy at \S+/stats\.sock: No such file"
    ):
        await haproxy.stats.run(["show info"])
