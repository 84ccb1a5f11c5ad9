"""Upstreams that fail: cut mid-response, invalid answers, closes before answering."""

from __future__ import annotations

import pytest
from proxying import ProxyFactory, UpstreamFactory, through
from wire import get


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_an_upstream_dying_mid_response_cuts_the_client_never_completes_it(
    partial: bytes, proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    client, _ = await through(proxies, upstreams, partial, close=True)
    answer = await client.exchange(get())
    assert await client.closed()
    assert not answer.complete
    assert bytes(answer.body) == b"only part"
    assert client.peer.received.endswith(b"only part" if b"Content-Length" in partial else b"\r\n")
    assert not client.peer.received.endswith(b"0\r\n\r\n")  # no terminating chunk


# (what the upstream does) -> (status, flags, error)
UPSTREAM_FAILURES = {
    "closes-before-answering": (b"", (502, "UC", "UpstreamReset")),
    "answers-garbage": (b"SSH-2.0-OpenSSH\r\n\r\n", (502, "UPE", "UpstreamProtocolError")),
    "bad-status-line": (b"HTTP/1.1 2000 OK\r\n\r\n", (502, "UPE", "UpstreamProtocolError")),
    "transfer-coding-gzip": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        (502, "UPE", "UpstreamProtocolError"),
    ),
    "content-length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        (502, "UPE", "UpstreamProtocolError"),
    ),
    "101-without-upgrade-request": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        (502, "UPE", "UpstreamProtocolError"),
    ),
}


@pytest.mark.parametrize(
    ("raw", "expected"), UPSTREAM_FAILURES.values(), ids=UPSTREAM_FAILURES.keys()
)
async def test_an_upstream_failing_before_its_head_gets_a_502_naming_the_instance(
    raw: bytes, expected: tuple[int, str, str], proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    client, upstream = await through(proxies, upstreams, raw, close=True)
    answer = await client.exchange(get())
    status, flags, error = expected
    assert (answer.status, answer.header("x-mesh-flags")) == (status, flags)
    body = answer.json()
    assert (body["error"], body["flags"], body["service"]) == (error, flags, "svc")
    assert body["instance"] == "svc-passing-0"
    assert body["request_id"] == answer.header("x-request-id") != ""
    assert len(upstream.requests()) == 1  # a fresh connection: never retried
    assert not await client.closed(0.1)  # the client's connection survives a 502
