"""Who runs in a demo mesh: a gateway, and instances of demo services each with its agent."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mesh.node.children import Child
from mesh.node.ports import free_port

MESH = (sys.executable, "-m", "mesh")


@dataclass(frozen=True, slots=True)
class Instance:
    """One demo service process and its agent, both known by `name` (its instance id)."""

    name: str  # hello-1: in the banner, in the x-instance header, in `mesh members`
    service: str
    version: str  # the agent announces it: the canary example routes by it
    port: int
    admin_port: int
    outbound: int
    calls: str = ""  # a service it calls on every request, through its agent's outbound
    inbound: int = 0  # its agent's mTLS inbound listener (`mesh up --secure`); 0 = none

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def service_child(self, env: Mapping[str, str]) -> Child:
        via = ["--calls", self.calls, "--via", f"http://127.0.0.1:{self.outbound}"]
        return Child(
            self.name,
            [
                *MESH,
                "demo-service",
                "--service",
                self.service,
                "--port",
                str(self.port),
                "--instance-id",
                self.name,
                *(via if self.calls else []),
            ],
            env=env,
            own_session=True,
        )

    def agent_child(self, env: Mapping[str, str]) -> Child:
        return Child(
            f"{self.name} agent",
            [
                *MESH,
                "agent",
                "--service",
                self.service,
                "--port",
                str(self.port),
                "--admin-port",
                str(self.admin_port),
                "--outbound",
                f"127.0.0.1:{self.outbound}",
                "--instance-id",
                self.name,
                "--version",
                self.version,
                *(["--inbound", f"127.0.0.1:{self.inbound}"] if self.inbound else []),
            ],
            env=env,
            own_session=True,
        )


def instances(hellos: int, inbound: bool = False) -> list[Instance]:
    """`hello-1`..`hello-N` (the last of two or more runs v2, the rest v1), and
    `frontend-1`, which calls `hello` by name through its agent; with `inbound`, each
    agent has an inbound listener (callers dial it, over mTLS)."""

    def instance(name: str, service: str, version: str, calls: str = "") -> Instance:
        ports = (free_port(), free_port(), free_port())
        return Instance(name, service, version, *ports, calls, free_port() if inbound else 0)

    return [
        *(
            instance(f"hello-{i}", "hello", "v2" if i == hellos > 1 else "v1")
            for i in range(1, hellos + 1)
        ),
        instance("frontend-1", "frontend", "v1", calls="hello"),
    ]


def gateway(listen: str, admin: str, env: Mapping[str, str]) -> Child:
    return Child(
        "gateway",
        [*MESH, "gateway", "--listen", listen, "--admin", admin],
        env=env,
        own_session=True,
    )


def signer(ca_dir: Path, env: Mapping[str, str]) -> Child:
    """`mesh ca serve`: signs the agents' and the gateway's certificates over NATS."""
    return Child("mesh ca", [*MESH, "ca", "serve", "--dir", str(ca_dir)], env=env, own_session=True)
