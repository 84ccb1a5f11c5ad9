"""Which nodes hear every service: gateways whose default routes reach any name."""

from __future__ import annotations

import pytest

from mesh.config import Settings
from mesh.node.node import follows_everything


@pytest.mark.parametrize(
    ("role", "services", "default_routes", "everything"),
    [
        ("gateway", "all", True, True),
        ("gateway", "routes", True, False),  # its routes, and others on their first call
        ("gateway", "all", False, False),  # nothing but its routes reaches a service
        ("agent", "all", True, False),  # MESH_GATEWAY_* are a gateway's
    ],
)
def test_only_a_gateway_reaching_any_name_hears_every_service(
    role: str, services: str, default_routes: bool, everything: bool
) -> None:
    settings = Settings(gateway_services=services, gateway_default_routes=default_routes)  # type: ignore[arg-type]
    assert follows_everything(settings, role) is everything
