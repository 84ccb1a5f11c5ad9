"""The rendered config run by a real HAProxy in front of loopback servers: the engine's answers."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from haproxy_config import compiled, plane, route, running

from mesh.errors import RuntimeApiError
from mesh.haproxy.layout import Server
from mesh.haproxy.render import render
from mesh.haproxy.runtime_api import RuntimeApi
from mesh.haproxy.show_answers import processes
from mesh.node.ports import free_port

TRACEPARENT = r"00-[0-9a-f]{32}-[0-9a-f]{16}-01"


class Echo(BaseHTTPRequestHandler):
    """Answers with its server's name, the target and the headers it received."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms wait

    def do_GET(self) -> None:
        name = self.server.name  # type: ignore[attr-defined]
        data = {"server": name, "target": self.path, "headers": [*self.headers.items()]}
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def echo(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def get(port: int, target: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", target, headers=headers)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read())
    finally:
        connection.close()


class Plane(NamedTuple):
    port: int
    master: Path  # the master's socket, for reloads


@pytest.fixture(scope="module")
def gateway(plane_at: Plane) -> int:
    return plane_at.port


@pytest.fixture(scope="module")
def plane_at(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    hello, world = echo("hello"), echo("world")
    where = tmp_path_factory.mktemp("haproxy")
    port, probe = free_port(), free_port()
    revision = compiled(
        route(
            name="api",
            match={"hosts": ["api.test"], "path_prefix": "/api"},
            to=[{"service": "hello"}],
            rewrite={"replace_prefix": "/v2/"},
        ),
        route(
            name="exact",
            match={"hosts": ["api.test"], "path_exact": "/api/exact"},
            to=[{"service": "world"}],
        ),
        route(
            name="split",
            match={"path_prefix": "/split"},
            to=[{"service": "hello"}, {"service": "world"}],
        ),
    )
    on = plane(
        listen=(("127.0.0.1", port),),
        probe=("127.0.0.1", probe),
        log_socket=str(where / "log.sock"),
        known=frozenset({"hello", "world", "down"}),
    )
    servers = {
        "hello": [Server("hello-1", "127.0.0.1", hello.server_address[1], 1, "ready")],
        "world": [Server("world-1", "127.0.0.1", world.server_address[1], 1, "ready")],
        "down": [Server("down-1", "127.0.0.1", world.server_address[1], 1, "maint")],
    }
    config = where / "haproxy.cfg"
    config.write_text(render(revision, on, servers))
    try:
        with running(config, probe):
            yield Plane(port, config.with_name("master.sock"))
    finally:
        for server in (hello, world):
            server.shutdown()
            server.server_close()


def test_routes_in_order_with_their_rewrites(gateway: int) -> None:
    _, _, seen = get(gateway, "/api/x?q=1", Host="API.test:80")
    assert (seen["server"], seen["target"]) == ("hello", "/v2/x?q=1")
    _, _, seen = get(gateway, "/api/exact", Host="api.test")
    assert (seen["server"], seen["target"]) == ("world", "/api/exact")
    status, _, _ = get(gateway, "/apix", Host="api.test")  # prefixes take whole segments
    assert status == 404


def test_default_route_by_path_strips_the_segment_and_adds_the_headers(gateway: int) -> None:
    status, _, seen = get(
        gateway,
        "/world/y?z=1",
        Host="127.0.0.1",
        **{"x-mesh-flags": "forged", "x-request-id": "abc"},
    )
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert re.fullmatch(TRACEPARENT, headers["traceparent"])
    assert (status, seen["server"], seen["target"]) == (200, "world", "/y?z=1")
    assert "x-mesh-flags" not in headers
    assert headers["x-request-id"] == "abc"
    assert headers["via"] == "1.1 natsmesh"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_default_route_by_host(gateway: int) -> None:
    _, _, seen = get(gateway, "/world/y", Host="Hello.")
    assert (seen["server"], seen["target"]) == ("hello", "/world/y")


def test_weighted_split_is_roughly_even(gateway: int) -> None:
    servers = [get(gateway, "/split")[2]["server"] for _ in range(200)]
    assert 60 <= servers.count("hello") <= 140


def test_no_route_is_404_nr(gateway: int) -> None:
    status, headers, answer = get(gateway, "/nosuch/x", Host="nowhere")
    assert (status, headers["x-mesh-flags"]) == (404, "NR")
    assert answer["error"] == "NoRoute"
    assert answer["request_id"] == headers["x-request-id"]


def test_no_usable_server_is_503_uh(gateway: int) -> None:
    status, headers, answer = get(gateway, "/x", Host="down")
    assert (status, headers["x-mesh-flags"]) == (503, "UH")
    assert answer == {
        "error": "NoHealthyUpstream",
        "flags": "UH",
        "detail": "no healthy instance of 'down'",
        "service": "down",
        "request_id": headers["x-request-id"],
    }


def _traceparent(gateway: int, **headers: str) -> str:
    seen = get(gateway, "/world/t", Host="127.0.0.1", **headers)[2]
    return str({name.lower(): value for name, value in seen["headers"]}["traceparent"])


def test_a_valid_traceparent_is_kept_an_invalid_one_replaced(gateway: int) -> None:
    valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert _traceparent(gateway, traceparent=valid) == valid
    all_zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
    replaced = _traceparent(gateway, traceparent=all_zero)
    assert re.fullmatch(TRACEPARENT, replaced)
    assert replaced != all_zero


def test_new_traces_take_every_bit_at_random(gateway: int) -> None:
    """128 and 64 random bits: each 8-digit piece of the ids differs between requests
    and uses its first digit (a 32-bit `rand` printed as 16 digits starts with zeros)."""
    ids = [_traceparent(gateway).split("-") for _ in range(64)]
    pieces = [
        [trace[n : n + 8] for n in range(0, 32, 8)] + [span[:8], span[8:]]
        for _, trace, span, _ in ids
    ]
    for column in zip(*pieces, strict=True):
        assert len(set(column)) == len(column)
        assert len({piece[0] for piece in column}) > 4


def _master(plane: Plane, command: str) -> str:
    return asyncio.run(RuntimeApi(str(plane.master)).run([command]))[0]


def _reloaded(plane: Plane) -> bool:
    try:
        asyncio.run(RuntimeApi(str(plane.master)).send("reload"))
    except RuntimeApiError:
        return False
    return True


def _old_workers(plane: Plane) -> tuple[int, ...]:
    try:
        return processes(_master(plane, "show proc")).old_workers
    except RuntimeApiError:  # the master re-executes itself to reload
        return ()


def _head(client: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(65536)
        assert chunk, "the connection was closed instead of answered"
        head += chunk
    return head.split(b"\r\n\r\n")[0].lower()


def test_a_request_the_old_worker_finishes_after_a_reload_is_forwarded(plane_at: Plane) -> None:
    """A request whose head the old worker was still reading at the reload is answered by
    it while it stops, and a stopping worker counts no server usable: that answer must
    be the instance's, not 503 UH (seen under load when a new service made a reload)."""
    with socket.create_connection(("127.0.0.1", plane_at.port), timeout=5) as client:
        client.sendall(b"GET /world/k HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + 5
        while not _reloaded(plane_at):  # the master may still be re-executing from its start
            assert time.monotonic() < deadline, "the master took no reload within 5 s"
            time.sleep(0.02)
        while not _old_workers(plane_at):
            assert time.monotonic() < deadline, "no reload within 5 s"
            time.sleep(0.02)
        client.sendall(b"\r\n")
        assert _head(client).startswith(b"http/1.1 200")
