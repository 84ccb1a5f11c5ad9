"""RFC 9110 duties of a proxy that HTTP linters check: Date, Via, the version, Max-Forwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from proxying import ProxyFactory, UpstreamFactory
from wire import Client, Message, Upstream, answering, closed_port, get, response


def assert_dated_now(message: Message) -> None:
    dates = message.all("date")
    assert len(dates) == 1, message.headers
    assert abs(parsedate_to_datetime(dates[0]) - datetime.now(UTC)) < timedelta(seconds=5)


PROXY_MADE = {
    "404-NR": (get(host="nosuch"), 404),
    "400": (b"GET / HTTP/1.1\r\nHost: svc\r\nContent-Length: x\r\n\r\n", 400),
    "503-UH": (get(host="sick"), 503),
    "502-UF": (get(host="gone"), 502),
}


@pytest.mark.parametrize(("raw", "status"), PROXY_MADE.values(), ids=PROXY_MADE.keys())
async def test_the_proxys_own_answers_carry_a_date(
    raw: bytes, status: int, proxies: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await proxies(
        {"svc": [upstream.port], "gone": [closed_port()]}, failing={"sick": [upstream.port]}
    )
    answer = await (await proxy.client()).exchange(raw)
    assert answer.status == status
    assert_dated_now(answer)


async def test_an_upstream_answer_without_a_date_gets_one_and_one_with_a_date_keeps_it(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    dated = "Sun, 06 Nov 1994 08:49:37 GMT"
    upstream = await upstreams(answering(response(200, b"a"), response(200, b"b", {"Date": dated})))
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    assert_dated_now(await client.exchange(get()))
    assert (await client.exchange(get())).all("date") == [dated]


async def test_via_is_added_to_requests_and_responses(client: Client, upstream: Upstream) -> None:
    answer = await client.exchange(get(extra="Via: 1.0 fred\r\n"))
    assert answer.all("via") == ["1.1 natsmesh"]
    assert upstream.requests()[-1].all("via") == ["1.0 fred", "1.1 natsmesh"]  # in hop order
    await client.exchange(get(version="1.0", extra="Connection: keep-alive\r\n"))
    assert upstream.requests()[-1].all("via") == ["1.0 natsmesh"]  # as the client spoke


async def test_an_http_1_0_client_gets_http_1_1_status_lines(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    upstream = await upstreams(answering(response(200, b"ok", version="1.0")))
    proxy = await proxies({"svc": [upstream.port]})
    client = await proxy.client()
    answer = await client.exchange(get(version="1.0"))
    assert (answer.status, bytes(answer.body)) == (200, b"ok")
    assert client.peer.received.startswith(b"HTTP/1.1 200 ")
    assert answer.header("connection") == "close"  # still framed for a 1.0 client


async def test_trace_with_max_forwards_zero_is_answered_by_the_proxy(
    client: Client, upstream: Upstream
) -> None:
    answer = await client.exchange(
        b"TRACE /t HTTP/1.1\r\nHost: svc\r\nMax-Forwards: 0\r\nUser-Agent: ua\r\n"
        b"Accept-Language: en\r\nCookie: session=secret\r\nAuthorization: Basic eDp5\r\n"
        b"X-Api-Key: k-alice\r\nX-Mesh-Peer: spiffe://x\r\nX-Probe: p\r\n\r\n"
    )
    assert (answer.status, answer.header("content-type")) == (200, "message/http")
    reflected = bytes(answer.body)
    assert reflected.startswith(b"TRACE /t HTTP/1.1\r\n")
    assert b"User-Agent: ua\r\n" in reflected
    assert b"Accept-Language: en\r\n" in reflected
    # Only harmless headers: credentials under any name (RFC 9110 9.3.8: a route's API
    # key header too) and the mesh's own headers are not echoed.
    for hidden in (b"secret", b"eDp5", b"k-alice", b"spiffe", b"X-Probe"):
        assert hidden not in reflected
    assert_dated_now(answer)
    assert upstream.received == b""
    assert (await client.exchange(get())).status == 200  # the connection goes on


async def test_options_with_max_forwards_zero_is_answered_by_the_proxy(
    client: Client, upstream: Upstream
) -> None:
    answer = await client.exchange(b"OPTIONS * HTTP/1.1\r\nHost: svc\r\nMax-Forwards: 0\r\n\r\n")
    assert (answer.status, answer.header("content-length")) == (200, "0")
    assert upstream.received == b""


@pytest.mark.parametrize(
    ("method", "sent", "forwarded"),
    [("TRACE", "3", "2"), ("OPTIONS", "1", "0"), ("GET", "0", "0"), ("DELETE", "5", "5")],
)
async def test_max_forwards_is_counted_down_for_trace_and_options_only(
    method: str, sent: str, forwarded: str, client: Client, upstream: Upstream
) -> None:
    raw = f"{method} /m HTTP/1.1\r\nHost: svc\r\nMax-Forwards: {sent}\r\n\r\n".encode()
    assert (await client.exchange(raw)).status == 200
    assert upstream.requests()[-1].all("max-forwards") == [forwarded]


@pytest.mark.parametrize("value", ["-1", "x", "1, 2"])
async def test_an_invalid_max_forwards_on_trace_is_400(
    value: str, client: Client, upstream: Upstream
) -> None:
    raw = f"TRACE / HTTP/1.1\r\nHost: svc\r\nMax-Forwards: {value}\r\n\r\n".encode()
    assert (await client.exchange(raw)).status == 400
    assert upstream.received == b""
