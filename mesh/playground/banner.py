"""What `mesh up` prints once its mesh serves: what runs where, and experiments to try."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mesh.playground.lineup import Instance
from mesh.security import pki


@dataclass(frozen=True, slots=True)
class Secured:
    """A `mesh up --secure` demo: its keys' folder, its identities' trust domain, and an
    access rule to try (`undo` is the document it replaces)."""

    folder: Path
    trust_domain: str
    access_example: Path
    undo: Path


@dataclass(frozen=True, slots=True)
class NatsNode:
    """One node of a `mesh up --cluster` NATS cluster: its server name, client URL and pid."""

    name: str
    url: str
    pid: int


def mesh_command() -> str:
    """How to run `mesh` from this shell: `mesh` when PATH finds this one, else its path."""
    script = Path(sys.executable).parent / "mesh"
    if not script.exists():
        return f"{sys.executable} -m mesh"
    found = shutil.which("mesh")
    if found is not None and Path(found).resolve() == script.resolve():
        return "mesh"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def text(
    instances: list[Instance],
    pids: dict[str, int],
    *,
    listen: str,
    admin: str,
    nats_url: str,
    applied: str,
    admin_token: bool = False,
    secure: Secured | None = None,
    nats_nodes: list[NatsNode] | None = None,
) -> str:
    """The banner; `pids` maps each child's label to its process id; `nats_nodes`, a
    cluster's nodes (`nats_url` then lists them all)."""
    mesh = mesh_command()
    secured = "  (TLS, a least-privilege NKey user per process)" if secure else ""
    rows = [(n.name, f"{n.url}  pid {n.pid}") for n in nats_nodes or ()] or [
        ("nats", nats_url + secured)
    ]
    rows.append(("gateway", f"http://{listen}  (admin http://{admin})"))
    if secure is not None:
        everyone = pki.spiffe_id(secure.trust_domain, "*")
        rows.append(("mesh ca", f"signs {everyone}, pid {pids['mesh ca']}"))
    rows += [
        (
            i.name,
            f"{i.version}  http://{i.address}  pid {pids[i.name]}, agent pid "
            f"{pids[f'{i.name} agent']} (admin :{i.admin_port}, outbound :{i.outbound}"
            + (f", mTLS inbound :{i.inbound})" if i.inbound else ")"),
        )
        for i in instances
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["natsmesh is up:", ""]
    lines += [f"  {label:<{width}}  {where}" for label, where in rows]
    if applied:
        lines += ["", applied]
    hellos = [i for i in instances if i.service == "hello"]
    victim = hellos[len(hellos) // 2]  # hello-2 of three
    v1 = ", ".join(i.name for i in hellos if i.version == "v1")
    v2 = ", ".join(i.name for i in hellos if i.version == "v2") or "none"
    demo = f"http://{victim.address}/_demo"
    lines += [
        "",
        "For other mesh commands in another terminal:",
        f"  export MESH_NATS_URL={nats_url}",
        *_credentials(secure.folder if secure else None, mesh),
        f"  {mesh} members                  # the live view, as NATS carries it",
        f"  {mesh} events tail --since 10m  # what happened, then what happens",
        f"  {mesh} top                      # requests, success, latency per service",
        f"  {mesh} tap --service hello      # hello's requests as they happen",
        f"  {mesh} explain GET http://{listen}/hello/   # where it goes, and why",
        f"  # the dashboard: http://{admin}/"
        + ("  (any user name, $MESH_ADMIN_TOKEN as password)" if admin_token else ""),
        "",
        "Try:",
        f"  curl http://{listen}/hello/            # path routing; run it a few times",
        f"  curl -H 'Host: hello' http://{listen}/  # host routing",
        f"  curl http://{listen}/frontend/         # frontend calls hello through its agent",
        (
            f'  curl -H "Authorization: Bearer $MESH_ADMIN_TOKEN" http://{admin}/mesh/members'
            if admin_token  # the variable's name: the banner never shows a secret
            else f"  curl http://{admin}/mesh/members       # the gateway's live view"
        ),
        *(_mtls(secure, listen, mesh) if secure else []),
        "",
        f"  # canary.yaml: /canary/ sends 90% to v1 ({v1}), 10% to v2 ({v2})",
        f"  for i in $(seq 20); do curl -s http://{listen}/canary/; echo; done"
        " | grep -o 'hello-[0-9]*' | sort | uniq -c",
        "",
        f"  # resilient.yaml: {victim.name} answers 500 to everything, yet every request succeeds",
        f"  curl -X POST '{demo}/fail?status=500'",
        "  for i in $(seq 6); do curl -s -o /dev/null -w '%{http_code} ' "
        f"http://{listen}/hello/; done; echo",
        f"  curl -X POST {demo}/reset",
        "",
        "  # edge-auth.yaml: api.example.com needs an API key (demo key: demo); 401 without,",
        "  # 429 once the consumer's burst of 5 is spent",
        "  for i in $(seq 8); do curl -s -o /dev/null -w '%{http_code} ' "
        f"-H 'Host: api.example.com' -H 'x-api-key: demo' http://{listen}/v1/hi; done; echo",
        "",
        f"  # fail over: kill {victim.name}'s service (or its agent, pid "
        f"{pids[f'{victim.name} agent']}); mesh up restarts it",
        f"  kill -9 {pids[victim.name]}",
        *_cluster_failover(nats_nodes or []),
        "",
        "Ctrl-C stops everything; so does the death of the gateway"
        + (" (NATS nodes may die: the other nodes carry on)." if nats_nodes else " or of NATS."),
    ]
    return "\n".join(lines)


def _cluster_failover(nodes: list[NatsNode]) -> list[str]:
    """How to watch the mesh outlive a NATS node: kill one, start nothing."""
    if not nodes:
        return []
    victim = nodes[len(nodes) // 2]
    return [
        "",
        "  # a NATS node dies: every process moves to another node, policies and events",
        f"  # are kept on {min(3, len(nodes))} nodes; curl on meanwhile",
        f"  kill -9 {victim.pid}   # {victim.name}",
    ]


def _credentials(folder: Path | None, mesh: str) -> list[str]:
    """How another terminal logs in to a secured demo: read-only, or as the policy admin."""
    if folder is None:
        return []
    return [
        f"  set -a; . {folder / 'monitor.env'}; set +a   # read-only: watching only",
        f"  # policies need the admin's: (set -a; . {folder / 'admin.env'}; {mesh} policy ...)",
        f"  # {folder} holds this demo's keys; it is removed when the demo stops",
    ]


def _mtls(secure: Secured, listen: str, mesh: str) -> list[str]:
    """What mTLS shows: each call's caller by its certificate, and an access rule enforced."""
    gateway, frontend = (pki.spiffe_id(secure.trust_domain, s) for s in ("gateway", "frontend"))
    admin = f"set -a; . {secure.folder / 'admin.env'}; set +a; {mesh} policy apply -f"
    return [
        "",
        f"  # mTLS strict (trust domain {secure.trust_domain}): the gateway and the agents call",
        "  # agents with certificates from the mesh CA; a service sees its caller's identity",
        f'  curl http://{listen}/hello/     # "peer": "{gateway}"',
        f'  curl http://{listen}/frontend/  # the upstream answer\'s "peer": "{frontend}"',
        "  # an access rule: hello admits the gateway only; frontend's call gets 403 RBAC",
        f"  ({admin} {secure.access_example}); curl http://{listen}/frontend/",
        f"  ({admin} {secure.undo})   # as before",
    ]
