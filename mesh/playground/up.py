"""`mesh up`: a whole mesh on one machine: private NATS, gateway, demo services with agents."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from mesh import config, durations, logs
from mesh.bus import setup
from mesh.clock import monotonic
from mesh.errors import ConfigError, MeshError
from mesh.node import admin as admin_api
from mesh.node import children
from mesh.node.children import Child, how_it_ended
from mesh.node.ports import check_bindable
from mesh.node.supervisor import Restart, Supervisor
from mesh.playground import banner, lineup
from mesh.playground import secure as playground_secure
from mesh.playground.lineup import Instance
from mesh.playground.natscluster import NatsCluster
from mesh.security import natsauth
from mesh.security.natsauth import Role

STOP_GRACE = 5.0  # seconds a child gets after SIGTERM before SIGKILL
# A killed demo instance comes back soon, but a crashing one not in a tight loop.
RESTART = Restart(first=1.0, cap=10.0)
# The example policies ship beside the packages (a sibling of mesh/, installed or not).
EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
CLUSTER_SIZES = range(3, 6)
# A cluster keeps the stream and the bucket on 3 of its nodes: any one may die.
CLUSTER_REPLICAS = 3


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "up", parents=[common], help="run a demo mesh: NATS, gateway, demo services with agents"
    )
    parser.add_argument("--listen", default="127.0.0.1:8000", help="gateway address")
    parser.add_argument("--admin", default="127.0.0.1:8001", help="gateway admin address")
    parser.add_argument("--instances", type=int, default=3, help="instances of `hello` (3)")
    parser.add_argument(
        "--ready-timeout",
        type=durations.argument,
        default=20.0,
        help="how long to wait for the mesh to be ready (20s)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="NATS over TLS with a least-privilege user per process, a mesh CA (`mesh ca "
        "serve`) and mTLS between services (keys in a private temporary folder)",
    )
    parser.add_argument(
        "--cluster",
        type=int,
        default=None,
        metavar="N",
        help="run N (3 to 5) clustered NATS nodes instead of one, the event stream and "
        "the policy bucket at 3 replicas: the mesh outlives any one node",
    )
    parser.add_argument(
        "--policies",
        default=str(EXAMPLES),
        help="policy documents to apply once the mesh is up ('' = none; default: the examples)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.instances < 1:
        raise ConfigError("--instances: at least 1")
    if args.secure and args.nats_url:
        raise ConfigError("--secure runs its own NATS: leave out --nats-url")
    if args.cluster is not None:
        if not CLUSTER_SIZES[0] <= args.cluster <= CLUSTER_SIZES[-1]:
            raise ConfigError("--cluster: 3 to 5 nodes (fewer than 3 survive no loss)")
        if args.nats_url:
            raise ConfigError("--cluster runs its own NATS: leave out --nats-url")
        if args.secure:
            # Routes between the nodes would need TLS and credentials of their own.
            raise ConfigError("--cluster with --secure is not supported yet")
    settings = config.load(nats_url=args.nats_url, preset=args.preset)
    logs.setup(args.log_level or "warning", as_json=False)
    return asyncio.run(_up(args, settings, monotonic))


async def _up(
    args: argparse.Namespace, settings: config.Settings, clock: Callable[[], float]
) -> int:
    # Ports first: a taken one is one line, before anything starts (and never a banner).
    check_bindable(args.listen, "--listen")
    check_bindable(args.admin, "--admin")
    instances = lineup.instances(args.instances, inbound=args.secure)
    secure = (
        playground_secure.prepare([i.service for i in instances], settings.trust_domain)
        if args.secure
        else None
    )
    try:
        return await _run(args, settings, clock, instances, secure)
    finally:
        if secure is not None:
            secure.remove()  # the demo's keys die with it


async def _run(
    args: argparse.Namespace,
    settings: config.Settings,
    clock: Callable[[], float],
    instances: list[Instance],
    secure: playground_secure.Credentials | None,
) -> int:
    from mesh.playground.natsserver import NatsServer, find_binary

    server: NatsServer | None = None
    cluster: NatsCluster | None = None
    replicas = CLUSTER_REPLICAS if args.cluster else settings.nats_replicas
    if args.nats_url:
        url = args.nats_url
    elif args.cluster:
        cluster = NatsCluster(
            find_binary(settings.nats_server_bin), args.cluster, presence=True, clock=clock
        )
        cluster.start()  # on this thread, as a single server
        url = cluster.urls
    else:
        config_file = secure.server_config if secure is not None else None
        server = NatsServer(
            find_binary(settings.nats_server_bin),
            config_file=config_file,
            tls_first=secure is not None,  # natscreds' nats.conf: handshake_first
            presence=secure is None,  # secure: natscreds' accounts have it already
            clock=clock,
        )
        server.start()  # on this thread, which outlives it (see NatsServer)
        url = server.url
    # Children speak only of trouble unless asked: the banner is what a newcomer reads.
    env = {
        **os.environ,
        "MESH_NATS_URL": url,
        "MESH_NATS_REPLICAS": str(replicas),
        "MESH_LOG_LEVEL": args.log_level or "warning",
    }

    def env_of(role: Role) -> dict[str, str]:
        """A NATS client's environment: its own role's credentials, and mTLS, when secure."""
        if secure is None:
            return env
        return {**secure.env(role.name, env), "MESH_MTLS": playground_secure.MTLS}

    # Demo services are no mesh nodes: none of the shell's secrets or NATS logins.
    quiet = playground_secure.without_secrets(env)
    # The gateway holds the presence watcher: a dead agent is suspect everywhere within
    # milliseconds, not after its heartbeats fall silent.
    if secure is not None:
        presence = secure.roles[natsauth.presence().name].env()
    else:
        held = cluster.accounts if cluster is not None else server and server.accounts
        presence = held.presence_env() if held else {}
    gateway_env = {**env_of(natsauth.gateway(playground_secure.GATEWAY)), **presence}
    gateway = lineup.gateway(args.listen, args.admin, gateway_env)
    services = [instance.service_child(quiet) for instance in instances]
    agents = [
        instance.agent_child(env_of(natsauth.agent(instance.service))) for instance in instances
    ]
    admin_env = env_of(natsauth.admin())
    # Signs the gateway's and agents' certificates; they ask again while it starts.
    signer = None if secure is None else lineup.signer(secure.mesh_ca, env_of(natsauth.ca()))
    supervisor = Supervisor(clock=clock)
    try:
        # The stream and the bucket exist before any node starts, so that the first
        # events are stored (a gateway would make them only once up; secure: only the
        # admin may).
        admin_login = secure.roles["admin"].overrides() if secure is not None else {}
        # A new cluster elects its JetStream leader first: the wait covers it.
        wait = args.ready_timeout if cluster is not None else 0.0
        await setup.set_up(
            config.load(nats_url=url, nats_replicas=replicas, **admin_login), wait=wait
        )
        if signer is not None:
            supervisor.start(signer, RESTART)
        supervisor.start(gateway)  # no restart: without it the demo cannot serve
        for child in (*services, *agents):
            supervisor.start(child, RESTART)
        if server is not None and server.child is not None:
            supervisor.add(server.child)
        everyone = [gateway, *services, *agents, *([signer] if signer else [])]
        await _wait_ready(
            args.admin, instances, everyone, args.ready_timeout, clock, settings.admin_token
        )
        applied = await asyncio.to_thread(_apply_policies, args.policies, admin_env)
        pids = {child.label: child.pid for child in everyone}
        text = banner.text(
            instances,
            pids,
            listen=args.listen,
            admin=args.admin,
            nats_url=url,
            nats_nodes=_nodes(cluster),
            applied=applied,
            admin_token=settings.admin_token is not None,
            secure=_secured(secure, settings.trust_domain),
        )
        print(text, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ended = await supervisor.watch(stop)
        if ended is None:
            print("\nstopping the mesh...", flush=True)
            return 0
        how = how_it_ended(ended.returncode or 0)
        print(f"mesh up: {ended.label} {how}: the mesh cannot serve without it", file=sys.stderr)
        return 1
    finally:
        # Agents first (they leave the mesh), then services, the gateway and the CA, NATS last.
        last = [gateway, *([signer] if signer else [])]
        await asyncio.to_thread(children.stop, [agents, services, last], grace=STOP_GRACE)
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.stop()


async def _wait_ready(
    admin: str,
    instances: list[Instance],
    started: list[Child],
    timeout: float,
    clock: Callable[[], float],
    token: SecretStr | None = None,
) -> None:
    """Until our own gateway routes to every instance we started, by id and address.

    The addresses are ports this mesh picked: another mesh answering on `admin` cannot
    pass for ours. Any child exiting meanwhile ends the wait: the mesh is not what was asked.
    With MESH_ADMIN_TOKEN set, the gateway (our child) requires it: it is sent.
    """
    expected = {(instance.name, instance.address) for instance in instances}
    deadline = clock() + timeout
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=1), headers=admin_api.credentials(token)
    ) as session:
        while True:
            for child in started:
                code = child.returncode
                if code is not None:
                    raise MeshError(f"{child.label} {how_it_ended(code)} before the mesh was ready")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                async with session.get(f"http://{admin}/mesh/members") as response:
                    members = (await response.json())["members"]
                routed = {(m["instance"], m["address"]) for m in members if m["routable"]}
                if expected <= routed:
                    return
            if clock() > deadline:
                raise MeshError(f"the mesh was not ready within {timeout:g} s")
            await asyncio.sleep(0.2)


def _nodes(cluster: NatsCluster | None) -> list[banner.NatsNode]:
    """The banner's rows for a cluster's nodes (none for a single server)."""
    if cluster is None:
        return []
    return [
        banner.NatsNode(name, server.url, server.pid or 0)
        for name, server in zip(cluster.names, cluster.servers, strict=True)
    ]


def _secured(
    secure: playground_secure.Credentials | None, trust_domain: str
) -> banner.Secured | None:
    """What the banner says of a secure demo; its access rule example goes in its folder."""
    if secure is None:
        return None
    resilient = EXAMPLES / "resilient.yaml"
    example = playground_secure.write_access_example(secure.folder, resilient)
    return banner.Secured(secure.folder, trust_domain, example, undo=resilient)


def _apply_policies(folder: str, env: dict[str, str]) -> str:
    """`mesh policy apply -f folder` against the new mesh; a line for the banner."""
    if not folder:
        return ""
    result = subprocess.run(
        [*lineup.MESH, "policy", "apply", "-f", folder],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        return f"policies from {folder} NOT applied: {result.stderr.strip()[:300]}"
    written = sum(line.startswith("wrote ") for line in result.stdout.splitlines())
    see = f"{banner.mesh_command()} policy list"
    return f"{written} policy documents applied from {folder} (see: {see})"
