"""`mesh up`: a whole mesh on one machine: private NATS, gateway, demo services with agents."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mesh import config
from mesh.errors import MeshError
from mesh.node import children as children_
from mesh.node import runtime
from mesh.node.children import Child, Supervisor, how_it_ended
from mesh.node.ports import free_port

STOP_GRACE = 5.0  # seconds a child gets after SIGTERM before SIGKILL
# The example policies ship beside the packages (a sibling of mesh/, installed or not).
EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "up", parents=[common], help="run a demo mesh: NATS, gateway, demo services with agents"
    )
    parser.add_argument("--listen", default="127.0.0.1:8000", help="gateway address")
    parser.add_argument("--admin", default="127.0.0.1:8001", help="gateway admin address")
    parser.add_argument("--instances", type=int, default=3, help="instances of `hello` (3)")
    parser.add_argument(
        "--ready-timeout", type=float, default=20.0, help="seconds to wait for the mesh to be ready"
    )
    parser.add_argument(
        "--policies",
        default=str(EXAMPLES),
        help="policy documents to apply once the mesh is up ('' = none; default: the examples)",
    )
    parser.set_defaults(func=main)


def _spawn(label: str, args: list[str], env: dict[str, str]) -> Child:
    # A session of its own: Ctrl-C reaches only `mesh up`, which stops children in order.
    child = Child(label, [sys.executable, "-m", "mesh", *args], env=env, own_session=True)
    child.start()
    return child


def _instance(
    service: str,
    instance: str,
    extra: list[str],
    env: dict[str, str],
    services: list[Child],
    agents: list[Child],
    *,
    outbound: int = 0,
) -> tuple[str, str]:
    """One demo service instance and its agent; returns its line for the banner."""
    port, admin_port = free_port(), free_port()
    outbound = outbound or free_port()
    common = ["--service", service, "--port", str(port)]
    services.append(
        _spawn(instance, ["demo-service", *common, "--instance-id", instance, *extra], env)
    )
    agent = [
        "agent",
        *common,
        "--admin-port",
        str(admin_port),
        "--outbound",
        f"127.0.0.1:{outbound}",
    ]
    agents.append(_spawn(f"{instance} agent", agent, env))
    return instance, f"http://127.0.0.1:{port}  (agent admin :{admin_port}, outbound :{outbound})"


def _members(admin: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://{admin}/mesh/members", timeout=1) as response:
        members: list[dict[str, object]] = json.load(response)["members"]
        return members


def _wait_ready(admin: str, instances: int, children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.returncode is not None:
                raise MeshError(f"{child.label} {how_it_ended(child.returncode)}")
        try:
            routable = [m["service"] for m in _members(admin) if m["routable"]]
            if routable.count("hello") >= instances and "frontend" in routable:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise MeshError(f"the mesh was not ready within {timeout:g} s")


def main(args: argparse.Namespace) -> int:
    settings = config.load(nats_url=args.nats_url, preset=args.preset)
    runtime.setup_logging(args.log_level or "warning", as_json=False)
    return asyncio.run(_up(args, settings))


async def _up(args: argparse.Namespace, settings: config.Settings) -> int:
    from mesh.playground.natsserver import NatsServer, find_binary

    server: NatsServer | None = None
    if args.nats_url:
        url = args.nats_url
    else:
        server = NatsServer(find_binary(settings.nats_server_bin))
        server.start()  # on this thread, which outlives it (see NatsServer)
        url = server.url
    # Children speak only of trouble unless asked: the banner is what a newcomer reads.
    env = {**os.environ, "MESH_NATS_URL": url, "MESH_LOG_LEVEL": args.log_level or "warning"}
    children: list[Child] = []
    services: list[Child] = []
    agents: list[Child] = []
    try:
        gateway_args = ["gateway", "--listen", args.listen, "--admin", args.admin]
        gateway = _spawn("gateway", gateway_args, env)
        children.append(gateway)
        rows = [("nats", url), ("gateway", f"http://{args.listen}  (admin http://{args.admin})")]
        for i in range(1, args.instances + 1):
            rows.append(_instance("hello", f"hello-{i}", [], env, services, agents))
        # A second service that calls `hello` by name through its own agent.
        outbound = free_port()
        via = ["--calls", "hello", "--via", f"http://127.0.0.1:{outbound}"]
        rows.append(
            _instance("frontend", "frontend-1", via, env, services, agents, outbound=outbound)
        )
        children = [*agents, *services, gateway]
        await asyncio.to_thread(
            _wait_ready, args.admin, args.instances, children, args.ready_timeout
        )
        applied = await asyncio.to_thread(_apply_policies, args.policies, env)
        _print_banner(rows, args.listen, args.admin, url, applied)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        supervisor = Supervisor()
        for child in children:
            supervisor.add(child)
        # A child that dies on its own ends the demo: better than a half mesh.
        ended = await supervisor.watch(stop)
        if ended is not None:
            print(f"{ended.label} {how_it_ended(ended.returncode or 0)}", file=sys.stderr)
        print("\nstopping the mesh...", flush=True)
        return 0
    finally:
        # Agents first (they leave the mesh), then services, the gateway, NATS last.
        await asyncio.to_thread(children_.stop, [[child] for child in children], grace=STOP_GRACE)
        if server is not None:
            server.stop()


def _apply_policies(folder: str, env: dict[str, str]) -> str:
    """`mesh policy apply -f folder` against the new mesh; a line for the banner."""
    if not folder:
        return ""
    result = subprocess.run(
        [sys.executable, "-m", "mesh", "policy", "apply", "-f", folder],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        return f"policies from {folder} NOT applied: {result.stderr.strip()[:300]}"
    written = sum(line.startswith("wrote ") for line in result.stdout.splitlines())
    return f"{written} policy documents applied from {folder} (see: mesh policy list)"


def _print_banner(
    rows: list[tuple[str, str]], listen: str, admin: str, url: str, applied: str
) -> None:
    width = max(len(label) for label, _ in rows)
    print("natsmesh is up:\n")
    for label, where in rows:
        print(f"  {label:<{width}}  {where}")
    if applied:
        print(f"\n{applied}")
    print(f"\nFor other mesh commands in another terminal:\n  export MESH_NATS_URL={url}")
    print(
        "\nTry:\n"
        f"  curl http://{listen}/hello/            # path routing; run it a few times\n"
        f"  curl -H 'Host: hello' http://{listen}/  # host routing\n"
        f"  curl http://{listen}/frontend/         # frontend calls hello through its agent\n"
        f"  curl http://{admin}/mesh/members       # the gateway's live view\n"
        "\nCtrl-C stops everything.",
        flush=True,
    )
