"""The demo NATS's accounts: anyone in the mesh's, and a presence login in the system's."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from mesh.security import natsauth, pki

PRESENCE_USER = "presence"
# Clients that log in with nothing are this user: the mesh's account, every permission,
# as on a server without accounts. Its password only keeps anyone from naming it.
_ANONYMOUS = "mesh"


@dataclass(frozen=True)
class Accounts:
    """The server config written, and the presence login it holds (a secret)."""

    config: Path
    presence_password: SecretStr

    def presence_env(self) -> dict[str, str]:
        """The settings that make a mesh process a presence watcher on this server."""
        return {
            "MESH_PRESENCE_USER": PRESENCE_USER,
            "MESH_PRESENCE_PASSWORD": self.presence_password.get_secret_value(),
        }


def write(config: Path) -> Accounts:
    """A server config at `config` (mode 0600: it holds the passwords): anonymous clients
    in the mesh's account, and the presence user in the system account, which alone
    makes the server publish advisories about the mesh's connections."""
    password = secrets.token_urlsafe(24)
    logins = [
        (natsauth.admin(), {"user": _ANONYMOUS, "password": secrets.token_urlsafe(24)}),
        (natsauth.presence(), {"user": PRESENCE_USER, "password": password}),
    ]
    text = natsauth.authorization(logins, no_auth_user=_ANONYMOUS) + natsauth.PINGS
    pki.write_private(config, text.encode())
    return Accounts(config, SecretStr(password))
