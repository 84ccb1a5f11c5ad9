"""The access log over loopback: one JSON line per request, whole, on disk once stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from memory_bus import MemoryHub
from proxying import ProxyFactory
from wire import Client, Upstream, get, post

from mesh import subjects
from mesh.messages import TapFilter, TapOpen, encode
from mesh.metrics import Metrics
from mesh.observe.tap_source import TapSource


async def test_each_request_is_one_line_with_its_fields_and_all_are_on_disk_at_stop(
    proxies: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    proxy = await proxies(
        {"svc": [upstream.port]}, failing={"down": [upstream.port]}, access_log=str(log)
    )
    client = await proxy.client()
    secret = "authorization: Bearer s3cr3t-token\r\ncookie: session=c00kie\r\n"
    answered = await client.exchange(get("/a/b?api_key=k3y", extra=secret))
    assert answered.status == 200
    assert (await client.exchange(post("content-length: 5\r\n", b"hello"))).status == 200
    not_found = await client.exchange(get("/x?q=1", host="nosuch"))
    unavailable = await client.exchange(get("/x", host="down", extra="x-request-id: given-1\r\n"))
    assert (not_found.status, unavailable.status) == (404, 503)
    # Written about once a second or at stop: stopping at once proves the flush on stop.
    await proxy.listener.stop(1)

    text = log.read_text()
    for secret_part in ("k3y", "s3cr3t", "c00kie", "api_key", "q=1"):
        assert secret_part not in text
    lines = [msgspec.json.decode(line) for line in text.splitlines()]
    assert [(line["status"], line["flags"]) for line in lines] == [
        (200, "-"),
        (200, "-"),
        (404, "NR"),
        (503, "UH"),
    ]
    ok, posted, no_route, unhealthy = lines
    assert ok["time"].endswith("Z")
    assert len(ok["time"]) == len("2026-01-01T00:00:00.000Z")
    assert (ok["method"], ok["authority"], ok["path"]) == ("GET", "svc", "/a/b")
    assert (ok["route"], ok["service"], ok["instance"]) == ("host", "svc", "svc-passing-0")
    assert ok["attempts"] == 1
    assert ok["request_id"] != posted["request_id"]
    assert ok["request_id"] == upstream.requests()[0].header("x-request-id")
    assert 0 <= ok["upstream_ms"] <= ok["duration_ms"]
    assert (posted["method"], posted["path"], posted["bytes_in"]) == ("POST", "/p", 5)
    assert (no_route["authority"], no_route["path"], no_route["service"]) == ("nosuch", "/x", "")
    assert (no_route["attempts"], no_route["instance"], "upstream_ms" in no_route) == (0, "", False)
    assert (unhealthy["service"], unhealthy["attempts"], unhealthy["instance"]) == ("down", 0, "")
    assert {"node", "route", "duration_ms"} <= set(unhealthy)
    assert ("consumer" in ok, "peer" in ok) == (False, False)  # no edge auth, no mTLS here
    # Bytes out: the response body as the client received it, proxy-made answers too.
    assert ok["bytes_out"] == len(answered.body) > 0
    assert (no_route["bytes_out"], unhealthy["bytes_out"]) == (
        len(not_found.body),
        len(unavailable.body),
    )
    # The proxy's own answers carry a request id, the same in the log, the header and
    # the body; one the client sent is kept.
    for line, answer in ((no_route, not_found), (unhealthy, unavailable)):
        assert line["request_id"] == answer.header("x-request-id") == answer.json()["request_id"]
    assert no_route["request_id"] not in ("", ok["request_id"], posted["request_id"])
    assert unhealthy["request_id"] == "given-1"


async def test_off_by_default(proxies: ProxyFactory) -> None:
    assert (await proxies({})).engine.access_log is None


# Refused as they arrive, before an exchange begins: (bytes sent, status, what is known).
REFUSED = [
    (
        b"GET /a/%2Fb?k=1 HTTP/1.1\r\nHost: svc\r\nX-Request-Id: given-2\r\n\r\n",
        400,
        ("GET", "/a/%2Fb", "svc"),
    ),
    # httptools reports a header once the next one begins: Host is not known here.
    (b"GET /x HTTP/1.1\r\nHost: svc\r\nBad Header\r\n\r\n", 400, ("GET", "/x", "")),
    (b"get / HTTP/1.1\r\n\r\n", 400, ("", "", "")),  # nothing parsed: nothing known
    (b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 99\r\n\r\n", 413, ("POST", "/up", "svc")),
    (
        b"GET /big HTTP/1.1\r\nHost: svc\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n",
        431,
        ("GET", "/big", "svc"),
    ),
]


async def test_requests_refused_before_an_exchange_are_logged_and_tapped(
    proxies: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    proxy = await proxies(
        {"svc": [upstream.port]},
        access_log=str(log),
        max_body_bytes=10,
        max_header_bytes=1024,
        client_header_timeout=0.05,
    )
    hub = MemoryHub()
    tapping = TapSource(hub.bus(), "gw-1", "edge", Metrics(), per_second=100, most_open=8)
    tapping.serve(proxy.engine)
    await tapping.start()
    wanted = TapFilter(status="4xx")
    await hub.bus().publish(subjects.TAP, encode(TapOpen(id="t1", ttl=5, filter=wanted)))
    try:
        answers = []
        for sent, _, _ in REFUSED:
            client = await proxy.client()
            answers.append(await client.exchange(sent))
        # A head still incomplete at its deadline: 408 when the engine's sweep sees it.
        slow = await proxy.client()
        slow.send(b"GET /slow HTTP/1.1\r\nHost: svc\r\n")
        await asyncio.sleep(0.1)
        proxy.engine.sweep()
        answers.append(await slow.response())
        records = tapping.table.taps["t1"].pending
    finally:
        await tapping.stop()
    assert proxy.engine.access_log is not None
    proxy.engine.access_log.flush()
    lines = [msgspec.json.decode(line) for line in log.read_text().splitlines()]
    expected = [(status, "DPE", *known) for _, status, known in REFUSED]
    expected.append((408, "DT", "GET", "/slow", ""))
    assert [answer.status for answer in answers] == [each[0] for each in expected]
    assert upstream.received == b""

    def known(line: dict[str, Any]) -> tuple[Any, ...]:
        return (line["status"], line["flags"], line["method"], line["path"], line["authority"])

    assert [known(line) for line in lines] == expected
    assert [known(msgspec.to_builtins(record)) for record in records] == expected
    for line, answer in zip(lines, answers, strict=True):
        assert line["bytes_out"] == len(answer.body) > 0
        assert (line["node"], line["route"], line["service"], line["instance"]) == ("", "", "", "")
        assert (line["attempts"], line["bytes_in"]) == (0, 0)
        assert line["request_id"] == answer.header("x-request-id") == answer.json()["request_id"]
        assert "upstream_ms" not in line  # no instance was tried
    assert lines[0]["request_id"] == "given-2"  # the client's, once its head was whole
    assert len({line["request_id"] for line in lines}) == len(lines)
    assert lines[-1]["duration_ms"] >= 50  # from the head's first byte to its deadline
    counted = proxy.engine.metrics.requests
    assert sum(counted.values()) == len(expected)


async def test_durations_are_finer_than_the_loops_millisecond(
    proxies: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """uvloop's clock steps by the millisecond: durations taken on it would be whole."""
    log = tmp_path / "access.log"
    proxy = await proxies({"svc": [upstream.port]}, access_log=str(log))
    client: Client = await proxy.client()
    for _ in range(5):
        assert (await client.exchange(get("/"))).status == 200
    assert proxy.engine.access_log is not None
    proxy.engine.access_log.flush()
    lines = [msgspec.json.decode(line) for line in log.read_text().splitlines()]
    # In microseconds: all five whole milliseconds by chance would be one in 10^15.
    assert any(line["duration_ms"] % 1 for line in lines)
    assert any(line["upstream_ms"] % 1 for line in lines)
    # The histogram behind mesh_request_duration_seconds and the load figures too.
    [seconds] = proxy.engine.metrics.duration_sums.values()
    assert seconds * 1000 != pytest.approx(round(seconds * 1000), abs=1e-6)
