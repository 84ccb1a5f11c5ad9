"""The engine's conformance cases through a real gateway on each data plane."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from haproxy_config import haproxy_binary, needs_haproxy
from mesh_cli import policy
from mesh_procs import Mesh, Proc, routable, wait_for
from raw_http import HANG, HOP_BY_HOP, Client, Upstream, exchange
from wire import FORWARDING, Message, get

from mesh.playground.natsserver import NatsServer

ROUTES = """\
kind: Route
name: slow
match: {path_prefix: /slow}
to: [{service: svc}]
timeouts: {request: 300ms}
---
kind: Route
name: empty
match: {path_prefix: /empty}
to: [{service: svc, subset: {version: none-such}}]
"""

# Retries off: conformance is about one attempt (as in conftest.proxies).
ENV = {"MESH_PRESET": "local", "MESH_RETRY_ATTEMPTS": "0", "MESH_MAX_BODY_BYTES": "4096"}


PLANES = ["python", pytest.param("haproxy", marks=needs_haproxy)]


@dataclass
class Gateways:
    procs: dict[str, Proc]
    upstream: Upstream


@pytest.fixture(scope="module")
def gateways(
    module_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateways]:
    """One gateway per data plane, started together, in front of the same instances."""
    where = tmp_path_factory.mktemp("planes")
    (where / "routes.yaml").write_text(ROUTES)
    applied = policy(module_nats.url, "apply", "-f", str(where / "routes.yaml"))
    assert applied.returncode == 0, applied.stderr
    upstream, gone = Upstream("svc-1"), Upstream("gone-1")
    mesh = Mesh(module_nats.url, where, env=ENV)
    try:
        mesh.agent(upstream, "svc")
        mesh.env["MESH_HEALTH_INTERVAL"] = "60"  # gone's agent never finds it gone
        mesh.agent(gone, "gone")
        del mesh.env["MESH_HEALTH_INTERVAL"]
        planes = ["python"] + (["haproxy"] if haproxy_binary() else [])
        procs = {plane: mesh.gateway(f"gateway-{plane}", "--data-plane", plane) for plane in planes}
        for proc in procs.values():
            for service in ("svc", "gone"):
                wait_for(lambda p=proc, s=service: routable(p.admin_port, s) != set(), 30)
        gone.close()  # known and routable, refusing connections from now on
        for proc in procs.values():
            wait_for(lambda p=proc: serves(p.port), 10)
        yield Gateways(procs, upstream)
    finally:
        mesh.close()
        upstream.close()


def serves(port: int) -> bool:
    """Whether the gateway forwards to svc yet (HAProxy's servers come after the view's)."""
    try:
        return exchange(port, get("/svc/ready")).status == 200
    except OSError:
        return False


@pytest.fixture(params=PLANES)
def plane(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def port(gateways: Gateways, plane: str) -> int:
    return gateways.procs[plane].port


# (request, status, flags, the body's `error` from the Python engine, from HAProxy)
ERRORS = {
    "unknown-host": (get("/x", host="nosuch"), 404, "NR", "NoRoute", "NoRoute"),
    "unknown-path": (get("/nosuch/x", host="127.0.0.1"), 404, "NR", "NoRoute", "NoRoute"),
    "no-instance": (get("/empty/x"), 503, "UH", "NoHealthyUpstream", "NoHealthyUpstream"),
    # Row "A refused connection's `error`": HAProxy cannot tell a refusal from the rest.
    "refused": (
        get("/gone/x", host="127.0.0.1"),
        502,
        "UF",
        "UpstreamRefused",
        "UpstreamConnectFailure",
    ),
    "timeout": (get(f"/slow{HANG}"), 504, "UT", "UpstreamTimeout", "UpstreamTimeout"),
}


@pytest.mark.parametrize(
    ("raw", "status", "flags", "python", "haproxy"), ERRORS.values(), ids=ERRORS.keys()
)
def test_requests_with_nowhere_to_go_get_the_engines_answer(
    raw: bytes, status: int, flags: str, python: str, haproxy: str, port: int, plane: str
) -> None:
    answer = exchange(port, raw)
    assert (answer.status, answer.header("x-mesh-flags")) == (status, flags), answer
    body = answer.json()
    assert (body["error"], body["flags"]) == (python if plane == "python" else haproxy, flags)
    assert body["request_id"] == answer.header("x-request-id")


def test_answers_are_dated_and_forwarded_ones_name_the_proxy(port: int) -> None:
    """RFC 9110 §6.6.1 and §7.6.3 (the upstream here sends no Date)."""
    forwarded, own = exchange(port, get("/svc/dated")), exchange(port, get("/nosuch/x"))
    for answer in (forwarded, own):
        (date,) = answer.all("date")
        assert abs(parsedate_to_datetime(date) - datetime.now(UTC)) < timedelta(seconds=5)
    assert forwarded.all("via") == ["1.1 natsmesh"]


# Refused: (status, x-mesh-flags) of a JSON answer, or of HAProxy's own page (flags None);
# FORWARDED: what HAProxy lets through (each a row of docs/haproxy.md).
FORWARDED = (0, None)
DPE = (400, "DPE")
PAGE = (400, None)  # row "Malformed requests HAProxy's parser refuses"
TOO_LARGE = (413, "DPE")  # past MESH_MAX_BODY_BYTES
SVC = "Host: svc\r\n"
# Framing a proxy cannot trust: refused, and the connection ends (RFC 9112 §6.3).
MALFORMED = {
    "conflicting-lengths": ("POST", SVC + "Content-Length: 3\r\nContent-Length: 4\r\n", DPE, PAGE),
    "length-not-a-number": ("POST", SVC + "Content-Length: x\r\n", DPE, PAGE),
    "length-and-chunked": (  # row "Content-Length with Transfer-Encoding"
        "POST",
        SVC + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        DPE,
        FORWARDED,
    ),
    "chunked-not-last": ("POST", SVC + "Transfer-Encoding: chunked, gzip\r\n", DPE, PAGE),
    "bad-chunk-size": (
        "POST",
        SVC + "Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n",
        DPE,
        PAGE,
    ),
    "obs-fold": ("GET", SVC + "X-A: a\r\n b\r\n", DPE, FORWARDED),  # row "obs-fold"
    "space-before-colon": ("GET", SVC + "X-A : a\r\n", DPE, PAGE),
    "space-in-name": ("GET", SVC + "X A: a\r\n", DPE, PAGE),
    "control-in-value": ("GET", SVC + "X-A: a\x01b\r\n", DPE, FORWARDED),  # row "control ..."
    "two-hosts": ("GET", SVC + "Host: other\r\n", DPE, PAGE),
    "junk-after-version": ("GET {m} HTTP/1.1 x", SVC, DPE, PAGE),
    "bad-method": ("G(T", SVC, DPE, PAGE),
    "bad-version": ("GET {m} HTTP/1.x", SVC, DPE, PAGE),
    "space-in-target": ("GET {m} x HTTP/1.1", SVC, DPE, PAGE),
    "declared-body-over-the-limit": (
        "POST",
        SVC + "Content-Length: 5000\r\n",
        TOO_LARGE,
        TOO_LARGE,
    ),
}
# Targets and hosts a proxy must not forward: refused, the connection may go on.
UNSOUND = {
    "user-info": ("GET http://user@svc{m} HTTP/1.1", SVC, DPE, DPE),
    "invalid-host": ("GET", "Host: we b\r\n", DPE, DPE),
    "host-with-at": ("GET", "Host: a@svc\r\n", DPE, DPE),
    "host-with-slash": ("GET", "Host: svc/x\r\n", DPE, DPE),
    "host-with-an-encoded-space": ("GET", "Host: we%20b\r\n", DPE, DPE),
    "no-host": ("GET", "", DPE, DPE),
    "encoded-slash": ("GET /a%2F{m} HTTP/1.1", SVC, DPE, DPE),
    "encoded-backslash": ("GET /a%5c{m} HTTP/1.1", SVC, DPE, DPE),
    "dot-segment": ("GET /svc/a/..{m} HTTP/1.1", SVC, FORWARDED, DPE),  # row "Path normalisation"
    "bad-percent": ("GET /svc/a%zz{m} HTTP/1.1", SVC, DPE, DPE),
    "short-percent": ("GET {m}%4 HTTP/1.1", SVC, DPE, DPE),
    "max-forwards-not-a-number": ("TRACE", SVC + "Max-Forwards: x\r\n", DPE, DPE),
    "max-forwards-a-list": ("OPTIONS", SVC + "Max-Forwards: 1, 2\r\n", DPE, DPE),
}
CASES = [
    pytest.param(*case, framing, id=name)
    for table, framing in ((MALFORMED, True), (UNSOUND, False))
    for name, case in table.items()
]


@pytest.mark.parametrize(("line", "head", "python", "haproxy", "framing"), CASES)
def test_malformed_and_unsound_requests_are_refused_and_kept_from_the_upstream(
    line: str,
    head: str,
    python: tuple[int, str | None],
    haproxy: tuple[int, str | None],
    framing: bool,
    gateways: Gateways,
    port: int,
    plane: str,
    request: pytest.FixtureRequest,
) -> None:
    """`line` is a method, or a request line with {m}: the marker, a path of its own. A
    chunked request gets an empty body, unless `head` carries one after its blank line."""
    marker = request.node.callspec.id  # the path's own: whatever routing strips before it
    path = f"/svc/{marker}"
    line = line.format(m=path) if "{m}" in line else f"{line} {path} HTTP/1.1"
    body = b"0\r\n\r\n" if "chunked" in head and "\r\n\r\n" not in head else b""
    raw = f"{line}\r\n{head}\r\n".encode("latin-1") + body
    refused(gateways, port, raw, marker, python if plane == "python" else haproxy, framing)


def refused(
    gateways: Gateways,
    port: int,
    raw: bytes,
    marker: str,
    expected: tuple[int, str | None],
    closes: bool = False,
) -> None:
    """`raw` answered with `expected` and kept from the upstream, or FORWARDED; `closes`:
    the connection ends too."""
    client = Client(port)
    try:
        answer = client.exchange(raw)
        if expected == FORWARDED:
            assert gateways.upstream.saw(marker.encode())
            return
        assert (answer.status, answer.header("x-mesh-flags")) == expected, answer
        assert not closes or client.closed()
    finally:
        client.close()
    assert not gateways.upstream.saw(marker.encode()), "it reached the upstream"


def test_a_head_over_the_limit_is_refused(gateways: Gateways, port: int, plane: str) -> None:
    """Row "Request head too large": 431 past 64 kB; HAProxy's page past its 16 kB buffer."""
    raw = get("/svc/big", extra=f"X-Big: {'b' * 70_000}\r\n")
    refused(gateways, port, raw, "X-Big", (431, "DPE") if plane == "python" else PAGE)


def forwarded(port: int, raw: bytes) -> Message:
    """The request as the upstream saw it (its echo)."""
    answer = exchange(port, raw)
    assert answer.status == 200, answer
    return Message(
        target=answer.json()["target"].encode("latin-1"),
        headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in answer.json()["headers"]],
    )


def test_hop_by_hop_request_headers_are_removed_where_documented(port: int, plane: str) -> None:
    seen = forwarded(
        port,
        get(
            "/svc/hop",
            extra="Connection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nX-Secret: s\r\n"
            "TE: trailers\r\nTrailer: X-Sum\r\nProxy-Connection: keep-alive\r\n"
            "Proxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nX-Kept: k\r\n",
        ),
    )
    removed = {"te", "trailer", "proxy-connection", "proxy-authorization", "keep-alive", "upgrade"}
    kept = {"connection", "x-secret"}  # row "Headers named in `Connection`"
    assert not removed & seen.names()
    assert (kept & seen.names()) == (set() if plane == "python" else kept)
    assert seen.header("x-kept") == "k"


def test_an_h2c_upgrade_is_not_passed_on(port: int) -> None:
    """Passed on, the upstream could take the client's connection as HTTP/2 past the proxy."""
    h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"
    seen = forwarded(port, get("/svc/h2c", extra=h2c))
    assert not {"upgrade", "http2-settings"} & seen.names()


def test_hop_by_hop_response_headers_are_removed_where_documented(port: int, plane: str) -> None:
    answer = exchange(port, get(f"/svc{HOP_BY_HOP}"))
    assert answer.header("x-public") == "yes"
    assert not {"keep-alive", "proxy-authenticate"} & answer.names()
    named = {"connection", "x-internal"}  # row "Headers named in `Connection`"
    assert named & answer.names() == (set() if plane == "python" else named)


@pytest.mark.parametrize(("extra", "expected"), FORWARDING.values(), ids=FORWARDING.keys())
def test_forwarding_headers(extra: str, expected: tuple[str, str, str], port: int) -> None:
    seen = forwarded(port, get("/svc/xf", extra=extra))
    # Row "x-forwarded-for": HAProxy adds a header line; a list either way.
    got = tuple(", ".join(seen.all(f"x-forwarded-{n}")) for n in ("for", "proto", "host"))
    assert got == expected


def test_request_ids_mesh_headers_and_trace_context(port: int) -> None:
    given = forwarded(port, get("/svc/id", extra="X-Request-Id: abc-123\r\nX-Request-Id: dup\r\n"))
    assert given.all("x-request-id") == ["abc-123"]
    (one,), (two,) = (forwarded(port, get("/svc/id")).all("x-request-id") for _ in range(2))
    assert "" != one != two != ""  # their form: row "x-request-id created"
    stripped = forwarded(port, get("/svc/m", extra="X-Mesh-Identity: admin\r\nX-Mesh-Flags: x\r\n"))
    assert not {"x-mesh-identity", "x-mesh-flags"} & stripped.names()
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert forwarded(port, get("/svc/t", extra=f"traceparent: {trace}\r\n")).all("traceparent") == [
        trace
    ]
    (created,) = forwarded(port, get("/svc/t", extra="traceparent: garbage\r\n")).all("traceparent")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", created)


def test_via_names_each_hop_as_the_client_spoke(port: int) -> None:
    seen = forwarded(port, get("/svc/via", extra="Via: 1.0 fred\r\n"))
    assert seen.all("via") == ["1.0 fred", "1.1 natsmesh"]
    assert forwarded(port, get("/svc/via", version="1.0")).all("via") == ["1.0 natsmesh"]


def test_a_content_length_with_leading_zeros_is_forwarded_canonical(port: int) -> None:
    raw = b"POST /svc/cl HTTP/1.1\r\nHost: svc\r\nContent-Length: 010\r\n\r\n0123456789"
    answer = exchange(port, raw)
    assert (answer.status, answer.json()["body"]) == (200, "0123456789")
    assert [v for n, v in answer.json()["headers"] if n.lower() == "content-length"] == ["10"]


def test_header_names_and_order_are_kept(port: int) -> None:
    seen = forwarded(port, get("/svc/order", extra="X-B: 2\r\nx-a: 1\r\nX-B: 3\r\n"))
    ours = [(n.lower(), v) for n, v in seen.headers if n.lower() in (b"x-a", b"x-b")]
    assert ours == [(b"x-b", b"2"), (b"x-a", b"1"), (b"x-b", b"3")]


@pytest.mark.parametrize(
    ("method", "sent", "forwards"),
    [("TRACE", "3", "2"), ("OPTIONS", "1", "0"), ("GET", "0", "0"), ("DELETE", "5", "5")],
)
def test_max_forwards_is_counted_down_for_trace_and_options_only(
    method: str, sent: str, forwards: str, port: int
) -> None:
    raw = f"{method} /svc/mf HTTP/1.1\r\nHost: svc\r\nMax-Forwards: {sent}\r\n\r\n".encode()
    assert forwarded(port, raw).all("max-forwards") == [forwards]


# (target, Host) -> the target the upstream sees, from each plane
TARGETS_FORWARDED = {
    "absolute-form": ("http://svc/a", "svc", "/a", "/a"),
    "absolute-form-without-path": ("http://svc", "svc", "/", "/"),
    "by-host-with-port": ("/a?q=1", "svc:8080", "/a?q=1", "/a?q=1"),
    "by-host-with-final-dot": ("/a", "SVC.", "/a", "/a"),
    "by-ip-literal": ("/svc/a", "[::1]:80", "/a", "/a"),
    "by-encoded-name": ("/svc/a", "caf%C3%A9", "/a", "/a"),
    "slashes-merged": ("/svc//a///b", "gw.example", "/a/b", "/a/b"),
    "query-left-alone": ("/svc/a?q=/../", "gw.example", "/a?q=/../", "/a?q=/../"),
    # Row "Path normalisation": HAProxy leaves %-encodings as sent.
    "unreserved-decoded": ("/svc/%7Eu/%61", "gw.example", "/~u/a", "/%7Eu/%61"),
}


@pytest.mark.parametrize(
    ("target", "host", "python", "haproxy"),
    TARGETS_FORWARDED.values(),
    ids=TARGETS_FORWARDED.keys(),
)
def test_targets_and_hosts_route_and_forward(
    target: str, host: str, python: str, haproxy: str, port: int, plane: str
) -> None:
    seen = forwarded(port, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert seen.target.decode() == (python if plane == "python" else haproxy)
