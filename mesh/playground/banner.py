"""What `mesh up` prints once its mesh serves: what runs where, and experiments to try."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mesh.playground.lineup import Instance


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
    credentials: Path | None = None,
) -> str:
    """The banner; `pids` maps each child's label to its process id."""
    mesh = mesh_command()
    secured = "  (TLS, a least-privilege NKey user per process)" if credentials else ""
    rows = [("nats", nats_url + secured), ("gateway", f"http://{listen}  (admin http://{admin})")]
    rows += [
        (
            i.name,
            f"{i.version}  http://{i.address}  pid {pids[i.name]}, agent pid "
            f"{pids[f'{i.name} agent']} (admin :{i.admin_port}, outbound :{i.outbound})",
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
        *_credentials(credentials, mesh),
        f"  {mesh} members                  # the live view, as NATS carries it",
        f"  {mesh} events tail --since 10m  # what happened, then what happens",
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
        "",
        "Ctrl-C stops everything; so does the death of the gateway or of NATS.",
    ]
    return "\n".join(lines)


def _credentials(folder: Path | None, mesh: str) -> list[str]:
    """How another terminal logs in to a secured demo: read-only, or as the policy admin."""
    if folder is None:
        return []
    return [
        f"  set -a; . {folder / 'monitor.env'}; set +a   # read-only: members, events",
        f"  # policies need the admin's: (set -a; . {folder / 'admin.env'}; {mesh} policy ...)",
        f"  # {folder} holds this demo's keys; it is removed when the demo stops",
    ]
