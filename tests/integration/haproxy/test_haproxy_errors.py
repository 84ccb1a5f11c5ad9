"""Failures behind a real HAProxy answered as the engine answers them: 502 UF, 504 UT, 503 UO."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from haproxy_config import compiled, plane, running

from mesh.haproxy.layout import Server
from mesh.haproxy.render import render
from mesh.node.ports import free_port
from mesh.policy.compile import ServicePolicy
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.retry import RetryPolicy

ENTERED = threading.Event()
RELEASE = threading.Event()


class Held(BaseHTTPRequestHandler):
    """Holds each request until the test releases it: a request in flight on demand."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        ENTERED.set()
        RELEASE.wait(5)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def get(port: int, target: str) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", target)
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, dict(answer.getheaders()), json.loads(body) if body else None
    finally:
        connection.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    held = ThreadingHTTPServer(("127.0.0.1", free_port()), Held)
    threading.Thread(target=held.serve_forever, daemon=True).start()
    silent = socket.create_server(("127.0.0.1", free_port()))  # connects, never answers
    where = tmp_path_factory.mktemp("errors")
    port, probe = free_port(), free_port()
    once = RetryPolicy(attempts=0)
    # HAProxy checks the first server of the config at once, the others over the hour:
    # `refused` comes after `held` (backends go by name), so only its traffic finds it out.
    services = {
        "refused": ServicePolicy(resilience=ResilienceConfig(retry=once)),
        "silent": ServicePolicy(resilience=ResilienceConfig(retry=once, request_timeout=0.2)),
        "held": ServicePolicy(resilience=ResilienceConfig(max_requests=1)),
    }
    on = plane(
        listen=(("127.0.0.1", port),),
        probe=("127.0.0.1", probe),
        log_socket=str(where / "log.sock"),
        known=frozenset(services),
    )
    servers = {
        "refused": [Server("refused-1", "127.0.0.1", free_port(), 1, "ready")],
        "silent": [Server("silent-1", "127.0.0.1", silent.getsockname()[1], 1, "ready")],
        "held": [Server("held-1", "127.0.0.1", held.server_address[1], 1, "ready")],
    }
    config = where / "haproxy.cfg"
    config.write_text(render(compiled(services=services), on, servers))
    try:
        with running(config, probe):
            yield port
    finally:
        RELEASE.set()
        held.shutdown()
        held.server_close()
        silent.close()


def test_a_refused_connection_is_502_uf(gateway: int) -> None:
    status, headers, answer = get(gateway, "/refused/x")
    assert (status, headers["x-mesh-flags"]) == (502, "UF")
    assert (answer["error"], answer["flags"], answer["service"]) == (
        "UpstreamConnectFailure",
        "UF",
        "refused",
    )


def test_no_answer_in_time_is_504_ut(gateway: int) -> None:
    status, headers, answer = get(gateway, "/silent/x")
    assert (status, headers["x-mesh-flags"]) == (504, "UT")
    assert (answer["error"], answer["instance"]) == ("UpstreamTimeout", "silent-1")


def test_past_the_concurrency_limit_is_503_uo(gateway: int) -> None:
    first: list[int] = []
    waiting = threading.Thread(target=lambda: first.append(get(gateway, "/held/x")[0]))
    waiting.start()
    assert ENTERED.wait(5)
    status, headers, answer = get(gateway, "/held/x")
    RELEASE.set()
    waiting.join(5)
    assert (status, headers["x-mesh-flags"], answer["error"]) == (503, "UO", "Overflow")
    assert first == [200]
