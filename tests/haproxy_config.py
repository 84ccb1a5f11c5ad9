"""HAProxy configurations for tests: policies from documents, rendered, and run for real."""

from __future__ import annotations

import contextlib
import http.client
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mesh.haproxy.layout import Server
from mesh.haproxy.render import PlaneConfig, render
from mesh.policy.compile import Compiled, ServicePolicy
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route

Check = Callable[[str], str]


def haproxy_binary() -> str | None:
    """Where the gateway will find HAProxy: on PATH, else Debian's place."""
    found = shutil.which("haproxy")
    if found is None and Path("/usr/sbin/haproxy").exists():
        found = "/usr/sbin/haproxy"
    return found


needs_haproxy = pytest.mark.skipif(
    haproxy_binary() is None, reason="haproxy is not installed (Debian's haproxy package)"
)


def route(**fields: Any) -> Route:
    fields.setdefault("to", [{"service": fields["name"]}])
    document = parse({"kind": "Route", **fields}, None)
    assert isinstance(document, Route), document
    return document


def compiled(*routes: Route, services: Mapping[str, ServicePolicy] | None = None) -> Compiled:
    """A revision as compile_revision makes it, service policies given as objects."""
    return Compiled(RouteTable(routes) if routes else None, services or {}, ServicePolicy())


def plane(**fields: Any) -> PlaneConfig:
    values: dict[str, Any] = {
        "listen": (("127.0.0.1", 18000),),
        "log_socket": "/tmp/natsmesh-test-log.sock",
        "probe": ("127.0.0.1", 18001),
        "revision": "r1",
        "known": frozenset({"hello", "world"}),
    }
    values.update(fields)
    return PlaneConfig(**values)


def config(
    revision: Compiled, on: PlaneConfig | None = None, servers: Mapping[str, Sequence[Server]] = {}
) -> str:
    return render(revision, on or plane(), servers)


@contextlib.contextmanager
def running(config: Path, probe: int) -> Iterator[subprocess.Popen[bytes]]:
    """A master-worker HAProxy on `config`, once its probe answers; stopped after."""
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    master = config.with_name("master.sock")
    command = [binary, "-W", "-q", "-f", str(config), "-S", str(master)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        try:
            deadline = time.monotonic() + 5
            while not _answers(probe):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "haproxy did not start within 5 s"
                time.sleep(0.02)
            yield process
        finally:
            process.terminate()
            process.wait(5)


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
    except OSError:
        return False
    finally:
        connection.close()
    return True
