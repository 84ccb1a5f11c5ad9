"""The rendered routes against the engine's router: a real HAProxy picks the same route."""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from haproxy_config import compiled, plane, route, running

from mesh.errors import NoRoute
from mesh.forwarding.policy_routes import PolicyRouter
from mesh.forwarding.routing import DefaultRoutes
from mesh.haproxy.layout import Server
from mesh.haproxy.render import render
from mesh.node.ports import free_port

KNOWN = frozenset({"hello", "world"})
ROUTES = (
    route(name="any", to=[{"service": "world"}], match={"methods": ["DELETE"]}),
    route(name="root", to=[{"service": "hello"}], match={"path_prefix": "/", "hosts": ["r.test"]}),
    route(name="regex", to=[{"service": "hello"}], match={"path_regex": "/a/[0-9]+(/.*)?"}),
    route(name="short", to=[{"service": "hello"}], match={"path_prefix": "/a"}),
    route(name="long", to=[{"service": "hello"}], match={"path_prefix": "/a/b/"}),
    route(name="exact", to=[{"service": "hello"}], match={"path_exact": "/a/b"}),
    route(name="get", to=[{"service": "hello"}], match={"path_exact": "/a/b", "methods": ["GET"]}),
    route(
        name="beta",
        to=[{"service": "world"}],
        match={"path_prefix": "/a", "headers": [{"name": "x-beta", "regex": "(?i)yes|on"}]},
    ),
    route(
        name="nobeta",
        to=[{"service": "world"}],
        match={"path_prefix": "/n", "headers": [{"name": "x-beta", "present": False}]},
    ),
    route(name="wild", to=[{"service": "world"}], match={"hosts": ["*.x.test"]}),
    route(
        name="wilder", to=[{"service": "world"}], match={"hosts": ["*.test"], "path_prefix": "/w"}
    ),
    route(
        name="exacthost",
        to=[{"service": "world"}],
        match={"hosts": ["A.x.test"], "path_prefix": "/a"},
    ),
)
# (method, Host, target, headers): each condition on both sides of its boundary. An
# absolute-form target comes with its own Host: HAProxy refuses a Host that disagrees.
REQUESTS: list[tuple[str, str, str, dict[str, str]]] = [
    ("GET", "q.test", "/a/b", {}),
    ("POST", "q.test", "/a/b", {}),
    ("POST", "q.test", "/a/b/", {}),
    ("POST", "q.test", "/a/b/c?x=1", {}),
    ("POST", "q.test", "/a/bc", {}),
    ("POST", "q.test", "/a/12", {}),
    ("POST", "q.test", "/a/12/x", {}),
    ("POST", "q.test", "/a/1x", {}),
    ("POST", "q.test", "/a", {}),
    ("POST", "q.test", "/ab", {}),
    ("POST", "q.test", "/a/x", {"x-beta": "YES"}),
    ("POST", "q.test", "/a/x", {"x-beta": "maybe"}),
    ("POST", "q.test", "/n/x", {}),
    ("POST", "q.test", "/n/x", {"x-beta": ""}),
    ("DELETE", "q.test", "/zzz", {}),
    ("POST", "r.test", "/zzz", {}),
    ("POST", "R.test.:8080", "/a/b", {}),
    ("POST", "a.x.test", "/a/b", {}),
    ("POST", "a.x.test", "/b", {}),
    ("POST", "b.a.x.test", "/w", {}),
    ("POST", "x.test", "/w/1", {}),
    ("POST", "y.test", "/w/1", {}),
    ("POST", "hello", "/zzz", {}),
    ("POST", "HELLO:80", "/zzz", {}),
    ("POST", "nowhere", "/world/x?y", {}),
    ("POST", "nowhere", "/world?y", {}),
    ("POST", "nowhere", "/worlds/x", {}),
    ("POST", "world", "http://world/x", {}),
    ("POST", "nowhere", "http://nowhere/hello/x", {}),
]


@dataclass
class Head:
    """A request as the engine's router reads it (mesh.forwarding.routing.RequestHead)."""

    method: bytes
    target: bytes
    host: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    client: bytes = b"127.0.0.1"


def engine_route(method: str, host: str, target: str, headers: dict[str, str]) -> str | None:
    router = PolicyRouter(
        compiled(*ROUTES).routes or pytest.fail("no routes"),
        DefaultRoutes(KNOWN.__contains__),
        random.Random(1),
    )
    sent = [(name.encode(), value.encode()) for name, value in headers.items()]
    try:
        return router(Head(method.encode(), target.encode(), host.encode(), sent), 0.0).route
    except NoRoute:
        return None


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_any(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = do_any

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    upstream = ThreadingHTTPServer(("127.0.0.1", free_port()), Ok)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    where = tmp_path_factory.mktemp("routing")
    port, probe = free_port(), free_port()
    on = plane(
        listen=(("127.0.0.1", port),),
        probe=("127.0.0.1", probe),
        log_socket=str(where / "log.sock"),
        known=KNOWN,
    )
    address = upstream.server_address[1]
    servers = {name: [Server(f"{name}-1", "127.0.0.1", address, 1, "ready")] for name in KNOWN}
    text = render(compiled(*ROUTES), on, servers)
    # The test's window into HAProxy's choice: the route's name on every answer.
    seen = "    http-after-response set-header x-route %[var(txn.route)]\n"
    text = text.replace("\nfrontend probe", seen + "\nfrontend probe")
    config = where / "haproxy.cfg"
    config.write_text(text)
    try:
        with running(config, probe):
            yield port
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_haproxy_takes_the_route_the_engine_takes(gateway: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway, timeout=5)
    got, expected = [], []
    for method, host, target, headers in REQUESTS:
        connection.request(method, target, headers={"Host": host, **headers})
        answer = connection.getresponse()
        answer.read()
        got.append(answer.getheader("x-route") or None if answer.status != 404 else None)
        expected.append(engine_route(method, host, target, headers))
    connection.close()
    assert got == expected
    assert len(set(expected)) >= 14  # the requests reach most routes, not one
