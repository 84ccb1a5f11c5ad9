"""A dashboard reader's backlog: bounded, the latest board only, ended on stop."""

from __future__ import annotations

import asyncio

from mesh.observe.backlog import Backlog


async def test_a_newer_board_replaces_one_not_yet_sent_and_comes_first() -> None:
    backlog = Backlog(limit=4)
    backlog.event(b"e1;")
    backlog.board(b"b1;")
    backlog.board(b"b2;")
    backlog.event(b"e2;")
    assert await backlog.next() == b"b2;e1;e2;"


async def test_events_past_the_limit_are_refused_until_the_reader_catches_up() -> None:
    backlog = Backlog(limit=2)
    assert [backlog.event(b"e%d;" % n) for n in range(4)] == [True, True, False, False]
    assert await backlog.next() == b"e0;e1;"
    assert backlog.event(b"e4;")
    assert await backlog.next() == b"e4;"


async def test_next_waits_for_something_and_returns_none_once_ended() -> None:
    backlog = Backlog(limit=2)
    waiting = asyncio.ensure_future(backlog.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    backlog.event(b"e;")
    assert await waiting == b"e;"
    backlog.event(b"unsent;")
    backlog.end()
    assert await backlog.next() is None
