"""The access log over loopback: one JSON line per request, whole, on disk once stopped."""

from __future__ import annotations

from pathlib import Path

import msgspec
from proxying import ProxyFactory
from wire import Upstream, get, post


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
