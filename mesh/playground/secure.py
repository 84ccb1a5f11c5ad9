"""`mesh up --secure`: every demo process its own NATS credentials, and a NATS that checks them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mesh import clock
from mesh.security import natscreds

GATEWAY = "gateway"
# Settings that carry NATS credentials: a child gets its own role's, never the shell's.
_CREDENTIALS = (
    "MESH_NATS_USER",
    "MESH_NATS_PASSWORD",
    "MESH_NATS_TOKEN",
    "MESH_NATS_NKEY_SEED",
    "MESH_NATS_CREDS",
    "MESH_NATS_TLS_CA",
    "MESH_NATS_TLS_CERT",
    "MESH_NATS_TLS_KEY",
)


@dataclass(frozen=True)
class Credentials:
    """The demo's credentials folder (a private temporary one) and each role's files."""

    folder: Path
    roles: dict[str, natscreds.Credentials]

    @property
    def server_config(self) -> Path:
        return self.folder / "nats.conf"

    def env(self, role: str, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with this role's credentials, by path: nothing secret on a command line."""
        return {**without_credentials(base), **self.roles[role].env()}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.upper() not in _CREDENTIALS}


def prepare(services: list[str]) -> Credentials:
    """A NATS CA, the server's certificate and a user per role, for this demo only."""
    folder = Path(tempfile.mkdtemp(prefix="natsmesh-secure-"))  # mode 0700
    now = datetime.fromtimestamp(clock.wall(), UTC)
    roles = natscreds.roles(sorted(set(services)), [GATEWAY])
    found = natscreds.write(folder, roles, hosts=["127.0.0.1", "localhost"], now=now, days=1)
    return Credentials(folder, found)
