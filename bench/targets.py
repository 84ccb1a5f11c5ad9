"""What the proxy benchmark drives: the fixed upstream and each proxy in front of it.

Every process binds 127.0.0.1 only and runs from a config file in the benchmark's
temporary folder (no system service is touched). Each proxy runs one worker pinned to
the proxy core; the upstream and the mesh's helpers (nats-server, agent) share the load
core with wrk, so the proxy core does nothing but proxy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.console import BenchError, say
from bench.cores import Cores, pin_threads, pinned
from bench.loopback import admin_get, http_get, wait_until
from bench.processes import REPO, Processes
from bench.proxy_summary import HAPROXY_PLANE
from mesh.node.children import stop
from mesh.node.ports import free_port
from mesh.playground.natsserver import NatsServer, find_binary

SERVICE = "bench"  # the mesh service name; also the first path segment of every URL
SMALL_BODY = b"hello, world\n"  # 13 bytes
LARGE_SIZE = 64 * 1024
PATHS = {"small": f"/{SERVICE}/small", "64k": f"/{SERVICE}/64k"}
_STARTUP = 15.0  # seconds a process gets to start answering


@dataclass(frozen=True, slots=True)
class Target:
    """Something wrk can be pointed at; `pid` is the process (tree) whose CPU is measured."""

    name: str
    label: str
    port: int
    pid: int
    cpus: str
    admin: int = 0  # a natsmesh gateway's admin port
    # What runs around each measurement of this target (a tap kept open), if anything.
    around: Callable[[], contextlib.AbstractContextManager[None]] | None = None

    def url(self, size: str) -> str:
        return f"http://127.0.0.1:{self.port}{PATHS[size]}"


def _ready(port: int, size: str = "small") -> bool:
    status, body = http_get(port, PATHS[size])
    expected = SMALL_BODY if size == "small" else None
    return status == 200 and (body == expected or len(body) == LARGE_SIZE)


def _verify(port: int, name: str) -> None:
    """Both sizes answer 200 with the whole body: a broken config must fail before timing."""
    for size in PATHS:
        if not _ready(port, size):
            raise BenchError(f"{name} does not relay {PATHS[size]} correctly")


# --- the fixed upstream --------------------------------------------------------------

# Serves the same answers on /small and /bench/small (and 64k): the gateway strips the
# service segment, the other proxies forward the path as it is.
_UPSTREAM_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/upstream.pid;
error_log stderr warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/upstream-body;
    proxy_temp_path {dir}/upstream-proxy;
    # The default closes a keep-alive connection every 1000 requests; proxies would then
    # spend part of each run reconnecting.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /healthz {{ return 200 "ok\\n"; }}
        location = /small {{ return 200 "hello, world\\n"; }}
        location = /{service}/small {{ return 200 "hello, world\\n"; }}
        # 64 KiB from a file: nginx caps a config token at 4 KiB, so `return` cannot hold it.
        location = /64k {{ alias {dir}/64k.bin; }}
        location = /{service}/64k {{ alias {dir}/64k.bin; }}
    }}
}}
"""


def start_upstream(procs: Processes, workdir: Path, nginx: str, cpus: str) -> Target:
    port = free_port()
    (workdir / "64k.bin").write_bytes(b"x" * LARGE_SIZE)
    conf = workdir / "upstream.conf"
    conf.write_text(_UPSTREAM_CONF.format(dir=workdir, port=port, service=SERVICE))
    child = procs.start("upstream", pinned([nginx, "-p", str(workdir), "-c", str(conf)], cpus))
    wait_until("the upstream nginx", lambda: _ready(port), timeout=_STARTUP, processes=procs)
    _verify(port, "the upstream")
    return Target("direct", "direct (no proxy)", port, child.pid, cpus)


# --- nginx as a proxy ----------------------------------------------------------------

_NGINX_PROXY_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx-proxy.pid;
error_log stderr warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/proxy-body;
    proxy_temp_path {dir}/proxy-proxy;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream {service} {{
        server 127.0.0.1:{upstream};
        keepalive 256;  # idle upstream connections kept: more than the largest wrk -c
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://{service};
            proxy_http_version 1.1;
            proxy_set_header Connection "";  # HTTP/1.1 keep-alive to the upstream
            # What the natsmesh gateway adds too, so every proxy does the same job.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""


def start_nginx(procs: Processes, workdir: Path, nginx: str, upstream: int, cpus: str) -> Target:
    port = free_port()
    conf = workdir / "nginx-proxy.conf"
    conf.write_text(
        _NGINX_PROXY_CONF.format(dir=workdir, port=port, upstream=upstream, service=SERVICE)
    )
    child = procs.start("nginx", pinned([nginx, "-p", str(workdir), "-c", str(conf)], cpus))
    wait_until("nginx", lambda: _ready(port), timeout=_STARTUP, processes=procs)
    _verify(port, "nginx")
    return Target("nginx", "nginx proxy_pass, keepalive", port, child.pid, cpus)


# --- HAProxy -------------------------------------------------------------------------

_HAPROXY_CONF = """\
global
    nbthread 1
    maxconn 4096  # well above the largest wrk -c; HAProxy needs 2 fds per connection

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option forwardfor

frontend {service}
    bind 127.0.0.1:{port}
    # What the natsmesh gateway adds too, so every proxy does the same job.
    unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
    http-request set-header X-Request-ID %[unique-id]
    http-request set-header X-Forwarded-Proto http
    default_backend upstream

backend upstream
    http-reuse always
    server up 127.0.0.1:{upstream}
"""


def haproxy_config(port: int, upstream: int) -> str:
    """The "HAProxy alone" configuration, listening on `port` (bench.plane_cost uses it too)."""
    return _HAPROXY_CONF.format(port=port, upstream=upstream, service=SERVICE)


def start_haproxy(
    procs: Processes, workdir: Path, haproxy: str, upstream: int, cpus: str
) -> Target:
    port = free_port()
    conf = workdir / "haproxy.cfg"
    conf.write_text(haproxy_config(port, upstream))
    # -db: stay in the foreground, one process, so the group stop reaches it.
    child = procs.start("haproxy", pinned([haproxy, "-db", "-f", str(conf)], cpus))
    wait_until("HAProxy", lambda: _ready(port), timeout=_STARTUP, processes=procs)
    _verify(port, "HAProxy")
    return Target("haproxy", "HAProxy, http-reuse always", port, child.pid, cpus)


# --- the bare relay ------------------------------------------------------------------


def start_passthrough(procs: Processes, upstream: int, cpus: str) -> Target:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.passthrough",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        f"127.0.0.1:{upstream}",
    ]
    child = procs.start("passthrough", pinned(command, cpus))
    wait_until("the passthrough relay", lambda: _ready(port), timeout=_STARTUP, processes=procs)
    _verify(port, "the passthrough relay")
    return Target("passthrough", "asyncio+uvloop byte relay", port, child.pid, cpus)


# --- natsmesh ------------------------------------------------------------------------


def start_nats(stack: contextlib.ExitStack, cores: Cores) -> NatsServer:
    """A private nats-server (JetStream on, as the gateway expects) on the load core."""
    nats = NatsServer(find_binary(os.environ.get("MESH_NATS_SERVER_BIN")))
    nats.start()
    stack.callback(nats.stop)
    if nats.pid is not None:
        pin_threads(nats.pid, cores.load)  # NatsServer starts it itself: pin afterwards
    return nats


def start_agent(procs: Processes, nats_url: str, upstream: int, cores: Cores) -> None:
    """An agent announcing the upstream as service `bench`, on the load core."""
    agent = [
        *_MESH,
        "agent",
        "--service",
        SERVICE,
        "--port",
        str(upstream),
        "--admin-port",
        "0",
        "--outbound",
        "",
        "--instance-id",
        "bench-upstream",
    ]
    procs.start("agent", pinned(agent, cores.load), env=_env(nats_url))


def export_tree(revision: str, into: Path) -> Path:
    """The Python packages of git `revision`, unpacked under `into`, to run side by side."""
    tree = into / f"natsmesh-{revision}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "mesh", "agents", "gateway", "policies"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise BenchError(f"git archive {revision}: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def start_gateway(
    procs: Processes,
    nats_url: str,
    cores: Cores,
    workers: int,
    *,
    name: str = "natsmesh",
    tree: Path | None = None,
) -> Target:
    """A gateway routing `/bench/...` to the agent's instance; from `tree` when given.

    One worker is pinned to the proxy core like every other proxy; with more workers the
    gateway gets both cores (it could not spread over one), sharing the load core with wrk.
    Another tree's code runs with it first on the path, from its own folder.
    """
    port, admin = free_port(), free_port()
    gateway = [
        *_MESH,
        "gateway",
        "--workers",
        str(workers),
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin}",
        "--name",
        name,
    ]
    cpus = cores.proxy if workers == 1 else cores.both
    env = _env(nats_url) if tree is None else {**_env(nats_url), "PYTHONPATH": str(tree)}
    child = procs.start(name, pinned(gateway, cpus), env=env, cwd=tree or REPO)

    def routable() -> bool:
        status, body = admin_get(admin, "/mesh/members")
        members = json.loads(body).get("members", []) if status == 200 else []
        return any(m["service"] == SERVICE and m["routable"] for m in members)

    wait_until(f"{name} to see the upstream routable", routable, timeout=30, processes=procs)
    if workers > 1:
        # Each worker has its own view: wait until requests, spread over them, all succeed.
        wait_until(
            f"every {name} worker to route",
            lambda: all(_ready(port) for _ in range(8 * workers)),
            timeout=30,
            processes=procs,
        )
    _verify(port, f"the {name} gateway")
    what = "natsmesh gateway" if tree is None else f"natsmesh gateway of {tree.name[9:]}"
    label = f"{what} ({workers} worker{'s' if workers > 1 else ''})"
    say(f"{label} on :{port} (admin :{admin}), NATS {nats_url}")
    return Target(name, label, port, child.pid, cpus, admin=admin)


def start_haproxy_gateway(procs: Processes, nats_url: str, cores: Cores, haproxy: str) -> Target:
    """The gateway with the HAProxy data plane: HAProxy's threads on the proxy core like
    every other proxy, the gateway's Python process (view, policies, HAProxy's log read
    back as metrics) on the load core with the mesh's other helpers; the CPU column
    counts both."""
    port, admin = free_port(), free_port()
    gateway = [
        *_MESH,
        "gateway",
        "--data-plane",
        "haproxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin}",
        "--name",
        HAPROXY_PLANE,
    ]
    env = {**_env(nats_url), "MESH_HAPROXY_BIN": haproxy}
    child = procs.start(HAPROXY_PLANE, pinned(gateway, cores.load), env=env)
    wait_until("the haproxy data plane to serve", lambda: _ready(port), timeout=30, processes=procs)
    # HAProxy (its master and worker, every thread) is a child of the gateway, started on
    # the gateway's core: moved to the proxy core, where it alone forwards.
    for pid in _descendants(child.pid):
        pin_threads(pid, cores.proxy)
    _verify(port, "the haproxy data plane gateway")
    label = "natsmesh gateway, HAProxy data plane"
    say(f"{label} on :{port} (admin :{admin}), NATS {nats_url}")
    return Target(HAPROXY_PLANE, label, port, child.pid, cores.proxy, admin=admin)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc's children lists."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = (task / "children").read_text().split()
            found.extend(int(child) for child in children)
            frontier.extend(int(child) for child in children)
    return found


def with_tap(gateway: Target, procs: Processes, nats_url: str, cpus: str, name: str) -> Target:
    """The same gateway, measured while one `mesh tap` matching every request is open
    (the default per-node cap); the tap runs on `cpus` (the load core) and prints to its
    log. Between its runs the tap is closed, so the gateway runs untapped otherwise."""

    admin = gateway.admin

    @contextlib.contextmanager
    def tap_open() -> Iterator[None]:
        child = procs.start("tap", pinned([*_MESH, "tap", "--json"], cpus), env=_env(nats_url))
        try:
            wait_until("the gateway to learn of the tap", lambda: _taps(admin) > 0, timeout=10)
            yield
        finally:
            # Ctrl-C: the tap says goodbye, and the next untapped run is untapped at once.
            stop([[child]], grace=5.0, first=signal.SIGINT)
            procs.children.remove(child)
            wait_until("the gateway to forget the tap", lambda: _taps(admin) == 0, timeout=15)

    label = f"{gateway.label} with one tap open"
    return dataclasses.replace(gateway, name=name, label=label, around=tap_open)


def _taps(admin: int) -> float:
    """The gateway's mesh_taps_open (every worker's, summed)."""
    status, body = admin_get(admin, "/metrics")
    lines = body.decode().splitlines() if status == 200 else []
    return sum(float(line.split()[-1]) for line in lines if line.startswith("mesh_taps_open"))


_MESH = [sys.executable, "-m", "mesh"]


def _env(nats_url: str) -> dict[str, str]:
    return {"MESH_NATS_URL": nats_url, "PYTHONUNBUFFERED": "1"}
