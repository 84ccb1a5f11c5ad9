"""Admin ports with MESH_ADMIN_TOKEN: nothing answers without it, probes and scrapes included."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from pydantic import SecretStr

from mesh.addresses import bind
from mesh.membership.view import View
from mesh.metrics import Metrics, registry_for
from mesh.node import admin
from mesh.timing import PRESETS

TOKEN = "0123456789abcdef-admin"
PATHS = ["/healthz", "/metrics", "/mesh/members", "/mesh/upstreams", "/", "/mesh/stream"]
PATHS += ["/no/such/page"]
CHALLENGES = ['Bearer realm="mesh admin"', 'Basic realm="mesh admin", charset="UTF-8"']


def basic(user: str, password: str) -> str:
    """What a browser sends once its user typed a name and a password at its prompt."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Admin:
    port: int
    refused: list[str] = field(default_factory=list)

    async def get(self, path: str, authorization: str | None) -> aiohttp.ClientResponse:
        headers = {} if authorization is None else {"Authorization": authorization}
        url = f"http://127.0.0.1:{self.port}{path}"
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            await r.read()
            return r


async def serve(token: SecretStr | None) -> tuple[Admin, aiohttp.web.AppRunner]:
    async def stream(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="a gateway's dashboard stream")

    app = admin.build(
        registry=registry_for(Metrics()),
        view=lambda: View(timing=PRESETS["lan"]),
        health=lambda: (True, {}),
        dashboard=stream,
    )
    sock = bind("127.0.0.1", 0)
    made = Admin(sock.getsockname()[1])
    runner = await admin.serve(app, sock, token=token, refused=lambda: made.refused.append(""))
    return made, runner


@pytest.fixture
async def guarded() -> AsyncIterator[Admin]:
    made, runner = await serve(SecretStr(TOKEN))
    yield made
    await runner.cleanup()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer 0123456789abcdef-admín",
        basic("operator", "wrong"),
        basic(TOKEN, ""),
        "Basic " + base64.b64encode(TOKEN.encode()).decode(),
        "Basic !!not-base64!!",
    ],
    ids=[
        "none",
        "empty",
        "no-token",
        "wrong",
        "longer",
        "shorter",
        "basic-raw",
        "bare",
        "utf-8",
        "basic-wrong",
        "basic-as-user",
        "basic-no-colon",
        "basic-garbage",
    ],
)
async def test_without_the_token_every_path_is_401_with_a_challenge(
    guarded: Admin, authorization: str | None
) -> None:
    for path in PATHS:
        answer = await guarded.get(path, authorization)
        assert answer.status == 401, path
        # Bearer for programs; Basic so that a browser asks its user (the dashboard).
        assert answer.headers.getall("WWW-Authenticate") == CHALLENGES
    assert len(guarded.refused) == len(PATHS)


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}", f"bearer  {TOKEN}", basic("operator", TOKEN), basic("", TOKEN)],
)
async def test_with_the_token_the_admin_api_answers(guarded: Admin, authorization: str) -> None:
    statuses = [(await guarded.get(path, authorization)).status for path in PATHS]
    assert statuses == [200, 200, 200, 200, 200, 200, 404]
    assert guarded.refused == []


async def test_without_a_token_set_the_port_is_open() -> None:
    made, runner = await serve(None)
    try:
        assert (await made.get("/metrics", None)).status == 200
    finally:
        await runner.cleanup()
