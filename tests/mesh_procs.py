"""Real mesh processes for integration and e2e tests: spawn, observe, kill, clean up."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mesh.node.children import Child, stop
from mesh.node.ports import free_port


class Served(Protocol):
    """A service instance an agent fronts: a Proc, or a server in the test's own process."""

    label: str
    port: int


class Proc(Child):
    """One mesh process of a test, in a session of its own, and the ports it was given."""

    def __init__(
        self, label: str, argv: list[str], env: dict[str, str], log: Path, port: int, admin: int
    ) -> None:
        super().__init__(label, argv, env=env, log=log, own_session=True)
        self.port = port
        self.admin_port = admin

    @property
    def alive(self) -> bool:
        return self.running

    def output(self) -> str:
        assert self.log is not None
        return self.log.read_text(errors="replace")


@dataclass
class Mesh:
    """Processes of one test, all talking to `nats_url`; `close()` kills what is left."""

    nats_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, label: str, *args: str, port: int = 0, admin_port: int = 0) -> Proc:
        env = {**os.environ, "MESH_NATS_URL": self.nats_url, "PYTHONUNBUFFERED": "1", **self.env}
        argv = [sys.executable, "-m", "mesh", *args]
        proc = Proc(label, argv, env, self.workdir / f"{label}.log", port, admin_port)
        proc.start()
        self.procs.append(proc)
        return proc

    def service(self, instance: str, service: str = "hello") -> Proc:
        port = free_port()
        return self.spawn(
            instance,
            "demo-service",
            "--service",
            service,
            "--port",
            str(port),
            "--instance-id",
            instance,
            port=port,
        )

    def agent(self, service_proc: Served, service: str = "hello", *extra: str) -> Proc:
        """The agent of `service_proc`; its outbound proxy port is the returned Proc's `port`."""
        admin, outbound = free_port(), free_port()
        return self.spawn(
            f"{service_proc.label}-agent",
            "agent",
            "--service",
            service,
            "--port",
            str(service_proc.port),
            "--admin-port",
            str(admin),
            "--outbound",
            f"127.0.0.1:{outbound}",
            "--instance-id",
            f"{service_proc.label}-agent",
            *extra,
            port=outbound,
            admin_port=admin,
        )

    def gateway(self, label: str = "gateway", *extra: str, workers: int = 1) -> Proc:
        port, admin = free_port(), free_port()
        return self.spawn(
            label,
            "gateway",
            "--workers",
            str(workers),
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
            *extra,
            port=port,
            admin_port=admin,
        )

    @contextlib.contextmanager
    def borrowed(self) -> Iterator[Mesh]:
        """A shared mesh lent to one test: what it starts inside is killed, and what it
        changes in the environment undone, when the block ends."""
        procs, env = len(self.procs), dict(self.env)
        try:
            yield self
        finally:
            stop([self.procs[procs:]], grace=0.0, first=signal.SIGKILL)
            del self.procs[procs:]
            self.env = env

    def close(self) -> None:
        stop([self.procs], grace=0.0, first=signal.SIGKILL)


def get_json(port: int, path: str, timeout: float = 2.0, token: str | None = None) -> Any:
    """GET a JSON page; `token`: the admin port's MESH_ADMIN_TOKEN."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def members(admin_port: int, token: str | None = None) -> list[dict[str, Any]]:
    try:
        answer = get_json(admin_port, "/mesh/members", token=token)
    except (OSError, ValueError):
        return []
    result: list[dict[str, Any]] = answer.get("members", [])  # a supervisor may say 503
    return result


def outbound_serving(agent: Proc) -> bool:
    """True once the agent's outbound proxy accepts connections (its policies are in)."""
    try:
        return bool(get_json(agent.admin_port, "/healthz")["outbound"] == "serving")
    except (OSError, ValueError, KeyError):
        return False


def routable(admin_port: int, service: str = "hello", token: str | None = None) -> set[str]:
    """Addresses of the routable instances of `service` in a gateway's view."""
    return {
        m["address"]
        for m in members(admin_port, token)
        if m["service"] == service and m["routable"]
    }


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.02) -> float:
    """Seconds until `condition()` held; AssertionError after `timeout`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


class Client:
    """A keep-alive HTTP/1.1 client that reconnects when the server closes."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        reused = self._conn is not None
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body=body, headers=headers or {})
            response = self._conn.getresponse()
            data = response.read()
        except (ConnectionError, http.client.RemoteDisconnected):
            self.close()
            if not reused:
                raise
            # An idle keep-alive connection the server closed as this request went out (a
            # proxy reloading, a pool's idle timeout): sent again on a new one, as HTTP/1.1
            # clients do (RFC 9112 section 9.3.1; these tests send nothing unsafe twice).
            return self.request(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
