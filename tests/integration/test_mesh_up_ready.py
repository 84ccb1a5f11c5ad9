"""mesh up's readiness probe: only its own gateway, routing to its own instances, is ready."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr

from mesh.errors import MeshError
from mesh.node.children import Child
from mesh.node.ports import free_port
from mesh.playground.lineup import Instance
from mesh.playground.up import _wait_ready

OURS = [Instance("hello-1", "hello", "v1", 9001, 9101, 9201)]


def ticking() -> Callable[[], float]:
    """A clock that moves one second at each reading."""
    readings = itertools.count()
    return lambda: float(next(readings))


@dataclass
class Admin:
    """A gateway admin port answering /mesh/members with `members`."""

    address: str
    members: list[dict[str, object]] = field(default_factory=list)
    token: str | None = None  # then /mesh/members wants it, as a gateway with one does


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    port = free_port()
    fake = Admin(f"127.0.0.1:{port}")

    async def page(request: web.Request) -> web.Response:
        if fake.token and request.headers.get("Authorization") != f"Bearer {fake.token}":
            return web.json_response({"error": "token"}, status=401)
        return web.json_response({"members": fake.members})

    app = web.Application()
    app.router.add_get("/mesh/members", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake
    await runner.cleanup()


def member(instance: str, address: str) -> dict[str, object]:
    return {"instance": instance, "address": address, "routable": True}


async def test_another_mesh_with_the_same_names_is_not_ready(admin: Admin) -> None:
    admin.members = [member("hello-1", "127.0.0.1:7777")]  # same id, not the port we started
    with pytest.raises(MeshError, match="not ready within 3 s"):
        await _wait_ready(admin.address, OURS, [], 3.0, ticking())


async def test_ours_routable_is_ready(admin: Admin) -> None:
    admin.members = [member("hello-1", "127.0.0.1:9001"), member("gateway-1", "127.0.0.1:8000")]
    await _wait_ready(admin.address, OURS, [], 3.0, ticking())


async def test_a_child_that_exits_meanwhile_ends_the_wait_with_its_name() -> None:
    child = Child("hello-1 agent", [sys.executable, "-c", "raise SystemExit(3)"])
    child.start()
    child.wait(10)
    with pytest.raises(MeshError, match="hello-1 agent exited with code 3 before the mesh"):
        await _wait_ready(f"127.0.0.1:{free_port()}", OURS, [child], 60.0, ticking())


async def test_with_an_admin_token_the_probe_sends_it(admin: Admin) -> None:
    admin.members = [member("hello-1", "127.0.0.1:9001")]
    admin.token = "0123456789abcdef-admin"
    with pytest.raises(MeshError, match="not ready within 3 s"):
        await _wait_ready(admin.address, OURS, [], 3.0, ticking())
    await _wait_ready(admin.address, OURS, [], 3.0, ticking(), SecretStr(admin.token))
