"""Fuzzing the engine's request path: no crash, no hang, malformed is 4xx, nothing smuggled.

Each example is one client connection of hostile bytes (fuzz_http), served in process
(fake_net) and judged by the oracle (oracle.py). `make fuzz` runs it longer, and also
atheris_engine.py, which lets coverage guide the bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fake_net import ENGINES, InProcessProxy
from fuzz_http import connections
from hypothesis import given, note
from hypothesis import strategies as st
from oracle import check

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, InProcessProxy]]:
    loop = asyncio.new_event_loop()
    try:
        yield {name: InProcessProxy(loop, **settings) for name, settings in ENGINES.items()}
    finally:
        loop.close()


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
