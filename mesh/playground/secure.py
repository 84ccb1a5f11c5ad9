"""`mesh up --secure`: every demo process its own NATS credentials, and a NATS that checks them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mesh import clock, config
from mesh.security import ca_cli, natscreds

GATEWAY = "gateway"
# Strict: the agents' inbound listeners take mTLS only, so every call names its caller.
MTLS = "strict"
# Settings that carry NATS credentials: a child gets its own role's, never the shell's.
_CREDENTIALS = frozenset(
    {
        "MESH_NATS_USER",
        "MESH_NATS_PASSWORD",
        "MESH_NATS_TOKEN",
        "MESH_NATS_NKEY_SEED",
        "MESH_NATS_CREDS",
        "MESH_NATS_TLS_CA",
        "MESH_NATS_TLS_CERT",
        "MESH_NATS_TLS_KEY",
        "MESH_PRESENCE_USER",
        "MESH_PRESENCE_PASSWORD",
        "MESH_PRESENCE_NKEY_SEED",
    }
)


@dataclass(frozen=True)
class Credentials:
    """The demo's credentials folder (a private temporary one) and each role's files."""

    folder: Path
    roles: dict[str, natscreds.Credentials]

    @property
    def server_config(self) -> Path:
        return self.folder / "nats.conf"

    @property
    def mesh_ca(self) -> Path:
        """The mesh CA (`mesh ca init`'s files), which `mesh ca serve` signs with."""
        return self.folder / "mesh-ca"

    def env(self, role: str, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with this role's credentials, by path: nothing secret on a command line."""
        return {**without_credentials(base), **self.roles[role].env()}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.upper() not in _CREDENTIALS}


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a demo service, which is no mesh node: no NATS login, no secret setting
    (the admin token, keys) of the shell's."""
    secrets = config.secret_settings() | _CREDENTIALS
    return {name: value for name, value in env.items() if name.upper() not in secrets}


def prepare(services: list[str], trust_domain: str) -> Credentials:
    """A NATS CA, the server's certificate and a user per role, and a mesh CA for the
    services' identities in `trust_domain`: for this demo only."""
    folder = Path(tempfile.mkdtemp(prefix="natsmesh-secure-"))  # mode 0700
    now = datetime.fromtimestamp(clock.wall(), UTC)
    roles = natscreds.roles(sorted(set(services)), [GATEWAY])
    found = natscreds.write(folder, roles, hosts=["127.0.0.1", "localhost"], now=now, days=1)
    credentials = Credentials(folder, found)
    ca_cli.create(credentials.mesh_ca, trust_domain, now, days=1)
    return credentials


# Appended to the example's `hello` Service: the gateway may call hello, frontend may not.
_ACCESS = """
# `mesh up --secure`: hello's agents admit only the callers named here, by the identity
# their mTLS certificate proves; frontend's calls get 403 with x-mesh-flags: RBAC.
access:
  allow_from: [gateway]
"""


def write_access_example(folder: Path, service_example: Path) -> Path:
    """`service_example` (a `hello` Service document) with an access rule, for the banner."""
    path = folder / "hello-access.yaml"
    path.write_text(service_example.read_text() + _ACCESS)
    return path
