"""`mesh up` as a user runs it: a subprocess, curl through the gateway, kill -9, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_cli import mesh_command, policy
from mesh_procs import Client, alive, get_json, members, wait_for

from mesh.node.ports import free_port

pytestmark = pytest.mark.e2e


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@dataclass
class Up:
    """A running `mesh up`, its banner and where its stderr goes."""

    process: subprocess.Popen[bytes]
    banner: str
    stderr: Path
    port: int
    admin: int

    def errors(self) -> str:
        return self.stderr.read_text()

    def row(self, name: str) -> dict[str, int]:
        """An instance's line in the banner: its service's port and pid, its agent's pid."""
        line = next(line for line in self.banner.splitlines() if line.split()[:1] == [name])
        found = re.search(r":(\d+)  pid (\d+), agent pid (\d+)", line)
        assert found is not None, line
        port, pid, agent = map(int, found.groups())
        return {"port": port, "pid": pid, "agent": agent}

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        """One request on a new connection: status, the instance that answered, body."""
        client = Client(self.port)
        try:
            status, answer, body = client.request("GET", path, headers=headers)
        finally:
            client.close()
        return status, answer.get("x-instance", ""), body


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).read()


def run_up(
    tmp_path: Path, port: int, admin: int, *args: str, **env: str
) -> subprocess.Popen[bytes]:
    with (tmp_path / "up.err").open("ab") as stderr:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "mesh", "up"),
                *("--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", *args),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            start_new_session=True,  # a process group of its own, as a terminal's job has
        )


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> Up:
        port, admin = free_port(), free_port()
        process = run_up(tmp_path, port, admin, *args, **env)
        started.append(process)
        banner = b""
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while b"Ctrl-C stops everything" not in banner:
            line = process.stdout.readline()
            assert line, f"mesh up ended early:\n{(tmp_path / 'up.err').read_text()}"
            banner += line
            assert time.monotonic() < deadline, banner.decode()
        return Up(process, banner.decode(), tmp_path / "up.err", port, admin)

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_mesh_up_serves_the_examples_and_ctrl_c_leaves_nothing(
    start_up: object, tmp_path: Path
) -> None:
    up: Up = start_up()  # type: ignore[operator]
    text = up.banner
    assert f"curl http://127.0.0.1:{up.port}/hello/" in text
    assert "7 policy documents applied from" in text  # the examples
    children = descendants(up.process.pid)
    assert len(children) >= 10  # nats-server, gateway (+workers), 4 services, 4 agents

    # The names in the banner are the instance ids, in the view and in x-instance.
    view = {m["instance"]: m for m in members(up.admin) if m["role"] == "agent"}
    assert sorted(view) == ["frontend-1", "hello-1", "hello-2", "hello-3"]
    assert {name: m["version"] for name, m in view.items()} == {
        "frontend-1": "v1",
        "hello-1": "v1",
        "hello-2": "v1",
        "hello-3": "v2",
    }
    for name in ("hello-1", "hello-2", "hello-3", "frontend-1"):
        assert view[name]["address"] == f"127.0.0.1:{up.row(name)['port']}"
    answered = Counter()
    # least_request breaks ties at random when requests go one at a time: 9 requests
    # miss an instance about 8% of the time, 60 only once in 10^10 runs.
    for _ in range(60):
        status, instance, body = up.get("/hello/")
        assert status == 200
        assert json.loads(body)["instance"] == instance
        answered[instance] += 1
    assert set(answered) == {"hello-1", "hello-2", "hello-3"}

    # hello.yaml: the classic host route.
    assert up.get("/hi", {"Host": "hello.example.com"})[0] == 200
    # canary.yaml: 10% of /canary/ to v2 (hello-3). 100 requests see none 3 times in 10^5.
    canary = Counter(up.get("/canary/")[1] for _ in range(100))
    assert set(canary) <= {"hello-1", "hello-2", "hello-3"}
    assert 1 <= canary["hello-3"] <= 30, canary
    # resilient.yaml: a 500 is retried elsewhere (the defaults retry 503 only).
    fail = f"http://127.0.0.1:{up.row('hello-2')['port']}/_demo"
    post(f"{fail}/fail?status=500")
    assert [up.get("/hello/")[0] for _ in range(12)] == [200] * 12
    post(f"{fail}/reset")
    # edge-auth.yaml: the api route needs a key, and limits each consumer to a burst of 5
    # (in each gateway worker).
    assert up.get("/v1/hi", {"Host": "api.example.com"})[0] == 401
    workers = get_json(up.admin, "/healthz").get("workers", 1)
    api = [
        up.get("/v1/hi", {"Host": "api.example.com", "x-api-key": "demo"})[0]
        for _ in range(6 * workers + 1)
    ]
    assert api[0] == 200
    assert 429 in api, api

    # The frontend calls hello by name through its own agent's outbound proxy.
    status, instance, body = up.get("/frontend/via")
    assert (status, instance) == (200, "frontend-1")
    answer = json.loads(body)
    assert answer["upstream"]["status"] == 200
    assert answer["upstream"]["body"]["instance"].startswith("hello-")
    assert answer["upstream"]["body"]["path"] == "/via"
    # The README's live change: a route applied from another terminal, at once.
    url = text.split("export MESH_NATS_URL=", 1)[1].split()[0]
    route = tmp_path / "greet.yaml"
    route.write_text(
        "kind: Route\nname: greet\nmatch: {path_prefix: /greet}\n"
        "rewrite: {replace_prefix: /}\nto: [{service: hello}]\n"
    )
    applied = policy(url, "apply", "-f", str(route), "--wait")
    assert "every live node applied it" in applied.stdout, applied.stdout + applied.stderr
    status, _, body = up.get("/greet/anything")
    assert status == 200
    assert json.loads(body)["path"] == "/anything"
    # The README's `--since 10m` tells the whole story: every node of the mesh, started
    # together, came up once in the stored log (each missed the others' first heartbeats).
    tail = mesh_command(
        *("events", "tail", "--since", "10m", "--kind", "instance.*", "--json"),
        *("--for", "0.1s", "--nats-url", url),
    )
    arrivals = Counter(
        event["instance"]
        for event in map(json.loads, tail.stdout.splitlines())
        if event["id"].startswith("arrival:")
    )
    assert arrivals == dict.fromkeys((m["instance"] for m in members(up.admin)), 1), tail

    os.killpg(up.process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
    assert up.process.wait(30) == 0
    # NATS outlived the agents: each one's leave went out over it.
    assert "leave not confirmed" not in up.errors()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in children if alive(pid)] == []


TOKEN = "0123456789abcdef-admin"


def test_a_killed_instance_comes_back_and_only_the_gateway_ends_mesh_up(
    start_up: object, tmp_path: Path
) -> None:
    # Two hellos and one gateway process (fewer to start), no examples: the defaults, with short
    # ejections, so a restarted instance is routed to again within seconds (an ejection
    # earned while it was down outlives the restart).
    up: Up = start_up(  # type: ignore[operator]
        *("--policies", "", "--instances", "2"),
        MESH_OUTLIER_BASE_EJECTION="1",
        MESH_PRESET="local",
        MESH_GATEWAY_WORKERS="1",  # test_mesh_up_serves_the_examples runs the default workers
        MESH_ADMIN_TOKEN=TOKEN,  # its readiness probe sends it; the banner never shows it
    )
    assert 'curl -H "Authorization: Bearer $MESH_ADMIN_TOKEN"' in up.banner
    assert TOKEN not in up.banner + up.errors()
    hello2 = up.row("hello-2")

    def served_by_hello_2_again() -> bool:
        statuses = [up.get("/hello/") for _ in range(6)]
        assert [status for status, _, _ in statuses] == [200] * 6  # the demo keeps serving
        return any(instance == "hello-2" for _, instance, _ in statuses)

    # kill -9 of one instance's service: reported, restarted, served by again.
    os.kill(hello2["pid"], signal.SIGKILL)
    wait_for(lambda: "hello-2 restarted" in up.errors(), timeout=10)
    assert "hello-2 was killed by SIGKILL; restarting in 1 s" in up.errors()
    wait_for(served_by_hello_2_again, timeout=20, every=0.1)

    # kill -9 of its agent: the same instance id comes back, in a new incarnation.
    before = next(m for m in members(up.admin, TOKEN) if m["instance"] == "hello-2")
    os.kill(hello2["agent"], signal.SIGKILL)
    wait_for(lambda: "hello-2 agent restarted" in up.errors(), timeout=10)

    def rejoined() -> bool:
        now = [m for m in members(up.admin, TOKEN) if m["instance"] == "hello-2"]
        return bool(now) and now[0]["routable"] and now[0]["incarnation"] > before["incarnation"]

    wait_for(rejoined, timeout=20, every=0.1)
    wait_for(served_by_hello_2_again, timeout=20, every=0.1)
    assert up.process.poll() is None

    # A second mesh up on the same ports: one line, no banner, before starting anything.
    second = subprocess.run(
        [
            *(sys.executable, "-m", "mesh", "up"),
            *("--listen", f"127.0.0.1:{up.port}", "--admin", f"127.0.0.1:{up.admin}"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert second.stdout == ""
    assert second.stderr.splitlines() == [
        f"mesh up: cannot listen on 127.0.0.1:{up.port} (--listen): address already in use"
    ]

    # The gateway's death ends the demo, with a non-zero code, and leaves nothing.
    children = descendants(up.process.pid)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in children}
    [gateway] = [
        pid
        for pid, argv in commands.items()
        if b"gateway" in argv and b"--worker-index" not in argv  # not one of its workers
    ]
    os.kill(gateway, signal.SIGKILL)
    assert up.process.wait(30) != 0
    assert "gateway was killed by SIGKILL: the mesh cannot serve without it" in up.errors()
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10)


SPIFFE = "spiffe://natsmesh.local/ns/default/sa/"


def test_mesh_up_secure_serves_with_a_user_per_process_mtls_and_no_secret_in_sight(
    start_up: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up: Up = start_up(  # type: ignore[operator]
        *("--secure", "--instances", "1"), MESH_GATEWAY_WORKERS="1", MESH_PRESET="local"
    )
    assert "(TLS, a least-privilege NKey user per process)" in up.banner
    assert "mTLS strict (trust domain natsmesh.local)" in up.banner
    assert "7 policy documents applied from" in up.banner  # with the admin's credentials
    folder = Path(up.banner.split("set -a; . ", 1)[1].split()[0]).parent
    seeds = sorted(folder.glob("*.nk"))
    assert [p.name for p in seeds] == [
        "admin.nk",
        "agent-frontend.nk",
        "agent-hello.nk",
        "ca.nk",
        "gateway-gateway.nk",
        "monitor.nk",
        "presence.nk",  # the gateway's system-account login: it hears disconnects
    ]
    assert {p.stat().st_mode & 0o777 for p in seeds} == {0o600}
    # The mesh CA `mesh ca serve` signs with, made for this demo in the same folder.
    ca_key = folder / "mesh-ca" / "ca.key"
    assert ca_key.stat().st_mode & 0o777 == 0o600
    signer = int(re.findall(r"mesh ca .* pid (\d+)", up.banner)[0])
    assert Path(f"/proc/{signer}/cmdline").read_bytes().split(b"\0")[3:5] == [b"ca", b"serve"]
    # The gateway calls hello's agent over mTLS, which tells hello who called.
    status, instance, body = up.get("/hello/")
    assert (status, instance) == (200, "hello-1")
    assert json.loads(body)["peer"] == SPIFFE + "gateway"
    # The frontend's agent took the policies and calls hello through its outbound proxy,
    # to hello's agent over mTLS, as frontend.
    status, _, body = up.get("/frontend/via")
    assert status == 200
    upstream = json.loads(body)["upstream"]
    assert (upstream["status"], upstream["body"]["peer"]) == (200, SPIFFE + "frontend")

    # The admin applies a route from another terminal; every node (agents too, as their
    # own service's users) acknowledges it.
    for line in (folder / "admin.env").read_text().splitlines():
        monkeypatch.setenv(*line.split("=", 1))
    url = up.banner.split("export MESH_NATS_URL=", 1)[1].split()[0]
    route = tmp_path / "greet.yaml"
    route.write_text(
        "kind: Route\nname: greet\nmatch: {path_prefix: /greet}\nto: [{service: hello}]\n"
    )
    applied = policy(url, "apply", "-f", str(route), "--wait")
    assert "every live node applied it" in applied.stdout, applied.stdout + applied.stderr
    assert up.get("/greet/x")[0] == 200
    # The banner's access rule: hello admits the gateway only; frontend's calls get 403 RBAC.
    example = folder / "hello-access.yaml"
    assert f"policy apply -f {example})" in up.banner
    applied = policy(url, "apply", "-f", str(example), "--wait")
    assert "every live node applied it" in applied.stdout, applied.stdout + applied.stderr
    upstream = json.loads(up.get("/frontend/via")[2])["upstream"]
    assert (upstream["status"], upstream["body"]["flags"]) == (403, "RBAC")
    assert up.get("/hello/")[0] == 200

    # Each agent runs as its own service's user; no secret on any command line (`ps`).
    children = descendants(up.process.pid)
    secrets = [p.read_bytes().strip() for p in [*seeds, ca_key]]
    for pid in children:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert not any(secret in cmdline for secret in secrets)
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if b"--service\0hello\0" in cmdline and b"agent\0" in cmdline:
                assert b"agent-hello.nk" in environ
                assert b"admin.nk" not in environ
                assert b"presence.nk" not in environ
            if b"mesh\0gateway\0" in cmdline:  # the gateway holds the presence watcher
                assert b"presence.nk" in environ
            if pid == signer:  # the CA answers with the CA's own NATS user
                assert b"/ca.nk" in environ
                assert b"admin.nk" not in environ

    os.killpg(up.process.pid, signal.SIGINT)
    assert up.process.wait(30) == 0
    assert not folder.exists()  # the demo's keys went with it
