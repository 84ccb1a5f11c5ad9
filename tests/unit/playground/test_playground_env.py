"""What `mesh up` hands a demo service: none of the shell's secrets or NATS logins."""

from __future__ import annotations

from mesh import config
from mesh.playground.secure import without_secrets

SHELL = {
    "PATH": "/usr/bin",
    "MESH_NATS_URL": "nats://127.0.0.1:4222",
    "MESH_LOG_LEVEL": "warning",
    "MESH_ADMIN_TOKEN": "admin-token-secret",
    "MESH_NATS_USER": "operator",
    "MESH_NATS_PASSWORD": "nats-secret",
    "mesh_nats_token": "lower-case-counts-too",  # settings are read case-insensitively
    "MESH_NATS_NKEY_SEED": "/keys/admin.nk",
    "MESH_NATS_CREDS": "/keys/admin.creds",
    "MESH_NATS_TLS_CA": "/keys/ca.pem",
    "MESH_NATS_TLS_CERT": "/keys/admin.pem",
    "MESH_NATS_TLS_KEY": "/keys/admin-key.pem",
    "MESH_GATEWAY_TLS_KEY": "/keys/gateway-key.pem",
    "MESH_PRESENCE_USER": "presence",
    "MESH_PRESENCE_PASSWORD": "system-account-secret",
}


def test_a_demo_service_gets_no_secret_setting() -> None:
    assert without_secrets(SHELL) == {
        "PATH": "/usr/bin",
        "MESH_NATS_URL": "nats://127.0.0.1:4222",
        "MESH_LOG_LEVEL": "warning",
    }


def test_every_secret_setting_is_known_as_one() -> None:
    """Derived from the settings: a new SecretStr (or key path) setting is covered at once."""
    assert config.secret_settings() == {
        "MESH_NATS_PASSWORD",
        "MESH_NATS_TOKEN",
        "MESH_ADMIN_TOKEN",
        "MESH_NATS_NKEY_SEED",
        "MESH_NATS_CREDS",
        "MESH_NATS_TLS_KEY",
        "MESH_GATEWAY_TLS_KEY",
        "MESH_PRESENCE_PASSWORD",
        "MESH_PRESENCE_NKEY_SEED",
    }
