"""Fuzzing the engine's request path: no crash, no hang, malformed is 4xx, nothing smuggled.

Each example is one client connection of hostile bytes (tests/integration/engine/fuzz_http),
served in process (fake_net). The oracle is a second httptools parse of the same bytes,
standing for what the client meant: the upstream must parse exactly those requests the
engine answered with the upstream's answer, with the same method and body, and nothing
else; every other answer is a 4xx made by the proxy. `make fuzz` runs it longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httptools
import pytest
from fake_net import UPSTREAM_MARK, InProcessProxy, Run
from fuzz_http import connections
from hypothesis import given, note
from hypothesis import strategies as st
from wire import Message, _Collector

pytestmark = pytest.mark.fuzz

# Each setting changes which checks a request meets first: the defaults; small limits on
# head and body (431 and 413, chunked bodies held until whole).
ENGINES = {"defaults": {}, "small-limits": {"max_header_bytes": 1024, "max_body_bytes": 16}}


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, InProcessProxy]]:
    loop = asyncio.new_event_loop()
    try:
        yield {name: InProcessProxy(loop, **settings) for name, settings in ENGINES.items()}
    finally:
        loop.close()


def parsed(data: bytes, *, requests: bool) -> tuple[list[Message], str]:
    """The complete messages httptools finds in `data`, and why it stopped before the end:
    the error, or "truncated" when the data ends inside a message."""
    collector = _Collector(request=requests)
    try:
        collector.feed(data)
    except httptools.HttpParserError as exc:
        return list(collector.done), f"{type(exc).__name__}: {exc}"
    return list(collector.done), "truncated" if collector.current is not None else ""


def check(data: bytes, run: Run) -> None:
    assert not run.errors, run.errors
    assert run.ended, "the engine neither answered nor closed: a hang"
    for side in run.upstreams:
        assert not side.error, (
            f"the upstream could not parse {bytes(side.received)!r}: {side.error}"
        )
    answers, broken = parsed(bytes(run.to_client), requests=False)
    assert broken in ("", "truncated"), (
        f"the client could not parse {bytes(run.to_client)!r}: {broken}"
    )
    answers = [a for a in answers if a.status != 100]
    meant, malformed = parsed(data, requests=True)
    forwarded = iter(run.forwarded)
    for index, answer in enumerate(answers):
        if answer.header(UPSTREAM_MARK.decode()) is not None:
            assert index < len(meant), "the upstream answered a request the client never made"
            seen, wanted = next(forwarded), meant[index]
            got, meant_here = (seen.method, bytes(seen.body)), (wanted.method, bytes(wanted.body))
            assert got == meant_here, f"request {index} reached the upstream as {got}"
        else:
            assert 400 <= answer.status < 500, answer
        if answer.header("connection") == "close":
            assert index == len(answers) - 1, "answers after a connection: close"
    if malformed != "truncated":
        # A client that half-closes inside a request is gone: answers still due are dropped.
        assert next(forwarded, None) is None, "the upstream got a request whose answer was lost"
    if malformed not in ("", "truncated") and (
        not answers or answers[-1].header("connection") != "close"
    ):
        raise AssertionError(f"malformed input ({malformed}) was neither refused nor ended")


@given(connection=connections, engine=st.sampled_from(sorted(ENGINES)))
def test_hostile_request_streams_are_refused_or_forwarded_exactly(
    engines: dict[str, InProcessProxy], connection: tuple[bytes, list[bytes]], engine: str
) -> None:
    raw, cut = connection
    note(f"stream {raw!r} in pieces {cut!r}")
    check(raw, engines[engine].run(cut))


# Streams the fuzzer found, replayed as they were cut, so that each finding stays fixed.
FOUND = {
    # Answers written in the loop iteration where the client's half-close arrived were
    # dropped with the connection: the client got nothing, the upstream had served it.
    "half-close-drops-answers": [
        b"DELETE /a?b=c HTTP/1.1\r\nx-equest-id: fuzz\r\nHost: svc\r\nx-request-id: fuzz\r\n\r\n"
        b"OPTIONS /a?b=c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\nx-request-id: f",
        b"uzz\r\nHost: \r\n\r\n3\r\nZP\xc8\r\n0;end\r\nx-mesh-flags: -1\r\nExect: upgrad",
        b"e\r\n\r\n",
    ],
}


@pytest.mark.parametrize("cut", FOUND.values(), ids=FOUND.keys())
def test_streams_the_fuzzer_found_are_handled(
    engines: dict[str, InProcessProxy], cut: list[bytes]
) -> None:
    run = engines["defaults"].run(cut)
    check(b"".join(cut), run)
    assert run.to_client, "nothing was answered"
