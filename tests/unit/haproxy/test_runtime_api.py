"""mesh.haproxy.runtime_api: answers judged, and the interactive framing of both sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mesh.errors import RuntimeApiError
from mesh.haproxy.runtime_api import RuntimeApi, check, failure


@pytest.mark.parametrize(
    ("command", "answer", "failed"),
    [
        ("add server be/a 127.0.0.1:1 weight 3", "New server registered.", False),
        (
            "add server be/a 127.0.0.1:1",
            "Already exists a server with the same name in backend.",
            True,
        ),
        ("add server be/a 127.0.0.1:1", "", True),
        ("del server be/a", "Server deleted.", False),
        ("del server be/a", "Only servers in maintenance mode can be deleted.", True),
        ("set server be/a state drain", "", False),
        ("set server be/a weight 3", "No such server.", True),
        ("enable health be/a", "", False),
        ("shutdown sessions server be/a", "", False),
        (
            "set server be/a addr 127.0.0.2 port 7002",
            "IP changed from '127.0.0.1' to '127.0.0.2', port changed from '7001' to '7002' "
            "by 'stats socket command'",
            False,
        ),
        (
            "set server be/a addr 127.0.0.2 port 7002",
            "no need to change the addr, no need to change the port by 'stats socket command'",
            False,
        ),
        ("set server be/a addr 127.0.0.2", "No such server.", True),
        ("set server be/a weight 300", "Absolute weight can only be between 0 and 256", True),
        ("show servers state be", "1\n# be_id be_name", False),
        ("show servers state nope", "Can't find backend.", True),
        ("show prox", "Unknown command, but maybe one of the following ones is...", True),
    ],
)
def test_answers_are_judged_per_command_kind(command: str, answer: str, failed: bool) -> None:
    assert (failure(command, answer) is not None) is failed


def test_check_names_the_first_failure_and_counts_the_others() -> None:
    commands = ["set server be/a weight 2", "set server be/b weight 2", "set server be/c weight 2"]
    with pytest.raises(RuntimeApiError) as failed:
        check(commands, ["", "No such server.\n", "No such server."])
    assert str(failed.value) == (
        "haproxy refused 'set server be/b weight 2': No such server. (and 1 more commands failed)"
    )
    check(commands, ["", "", ""])


@asynccontextmanager
async def haproxy_like(path: Path, reply: Callable[[bytes], bytes]) -> AsyncIterator[str]:
    """A unix socket that, once sent `quit`, writes `reply(request)` and closes, as
    HAProxy's CLI does (a reply of b"" without closing: one that never answers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"quit\n")
        answer = reply(request)
        if not answer:
            await asyncio.sleep(10)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield str(path)
    finally:
        server.close()


# As HAProxy 2.6 writes them: the stats socket answers `prompt` with an empty line.
STATS = b"\n> New server registered.\n\n> \n> 1\n# be_id be_name\n3 be 1 a\n\n> "
# The master prompts without one, also after `quit`; its name shows a failed reload.
MASTER = b"master[ReloadFailed]> #<PID> <type>\n1 master 1 [failed: 1]\n\nmaster[ReloadFailed]> "


async def test_a_stats_batch_is_one_connection_split_per_command(tmp_path: Path) -> None:
    requests: list[bytes] = []

    def reply(request: bytes) -> bytes:
        requests.append(request)
        return STATS

    commands = ["add server be/a 127.0.0.1:1", "set server be/a state ready", "show servers state"]
    async with haproxy_like(tmp_path / "stats.sock", reply) as path:
        answers = await RuntimeApi(path).run(commands)
    assert requests == [b"prompt\n" + "".join(c + "\n" for c in commands).encode() + b"quit\n"]
    assert answers == ["New server registered.", "", "1\n# be_id be_name\n3 be 1 a"]


async def test_the_masters_prompt_is_understood(tmp_path: Path) -> None:
    async with haproxy_like(tmp_path / "master.sock", lambda _: MASTER + b"master> ") as path:
        answers = await RuntimeApi(path).run(["show proc"])
    assert answers == ["#<PID> <type>\n1 master 1 [failed: 1]"]


async def test_too_few_answers_is_an_error(tmp_path: Path) -> None:
    async with haproxy_like(tmp_path / "stats.sock", lambda _: b"\n> \n> ") as path:
        with pytest.raises(RuntimeApiError, match="closed the connection after 1 of 2 answers"):
            await RuntimeApi(path).run(["set server be/a weight 1", "set server be/b weight 1"])


async def test_silence_is_a_timeout(tmp_path: Path) -> None:
    async with haproxy_like(tmp_path / "stats.sock", lambda _: b"") as path:
        with pytest.raises(RuntimeApiError, match=r"did not answer within 0\.1 s"):
            await RuntimeApi(path, timeout=0.1).run(["show info"])


async def test_a_missing_socket_is_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeApiError, match=r"cannot reach haproxy at \S+: No such file"):
        await RuntimeApi(str(tmp_path / "none.sock")).run(["show info"])


async def test_a_command_cannot_smuggle_another() -> None:
    with pytest.raises(RuntimeApiError, match="newline or ';'"):
        await RuntimeApi("/nonexistent").run(["set server be/a weight 1; shutdown sessions"])
