"""`mesh explain` agrees with the engine: the same bytes, served in process, get the answer
or reach the upstream with the target that the explanation names."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator

import pytest
from fake_net import InProcessProxy

from mesh.forwarding.explanation import Question
from mesh.forwarding.policy_routes import PolicyRouter
from mesh.membership.view import View
from mesh.observe.explain_answer import Vantage, explain
from mesh.policy.decode import parse
from mesh.policy.match import RouteTable
from mesh.policy.route import Route
from mesh.timing import PRESETS

GHOST = parse(
    {
        "kind": "Route",
        "name": "ghost",
        "match": {"path_prefix": "/ghost"},
        "to": [{"service": "ghost"}],
    },
    None,
)
KEYED = parse(
    {
        "kind": "Route",
        "name": "keyed",
        "match": {"path_prefix": "/v1"},
        "to": [{"service": "svc"}],
        "auth": {
            "type": "api_key",
            "query": "api_key",
            "keys": [{"consumer": "ops", "sha256": hashlib.sha256(b"demo").hexdigest()}],
        },
    },
    None,
)


@pytest.fixture(scope="module")
def proxies() -> Iterator[dict[bool, InProcessProxy]]:
    """An engine per MESH_NORMALIZE_PATH setting: two Route documents, then the default
    routes (one keyed route, one to a service the engine does not know)."""
    loop = asyncio.new_event_loop()
    try:
        made = {}
        for normalize in (True, False):
            proxy = made[normalize] = InProcessProxy(loop, normalize_path=normalize)
            assert isinstance(KEYED, Route)
            assert isinstance(GHOST, Route)
            engine = proxy.engine
            engine.router = PolicyRouter(
                RouteTable([KEYED, GHOST]), engine.default_routes, random.Random(1)
            )
        yield made
    finally:
        loop.close()


# (method, target, Host or None, other headers): each sent as bytes and asked as a question.
CASES = [
    ("GET", "/svc/x?q=1", "gw", ()),
    ("GET", "/a/../svc/x", "gw", ()),  # normalised: reaches svc
    ("GET", "/svc//x/./y", "gw", ()),
    ("GET", "/svc/%2Fx", "gw", ()),  # 400 DPE when normalising, forwarded as is when not
    ("GET", "/svc/%7Ex", "gw", ()),
    ("get", "/svc/", "gw", ()),  # llhttp: invalid method
    ("PURGE", "/svc/", "gw", ()),
    ("GET", "/", "[::1", ()),
    ("GET", "/svc/", "a b", ()),
    ("GET", "/svc/\x00", "gw", ()),
    ("GET", "/svc/", None, ()),  # HTTP/1.0: no Host needed
    ("GET", "/nothing", "gw", ()),
    ("GET", "http://svc/x", "gw", ()),  # absolute form: its authority is the Host
    ("GET", "/svc/", "gw", (("Host", "other"),)),
    ("GET", "/svc/", "gw", (("Transfer-Encoding", "gzip, chunked"),)),
    ("OPTIONS", "/svc/", "gw", (("Max-Forwards", "0"),)),
    ("GET", "/v1/x?a=1&api_key=demo", "gw", ()),  # the key leaves the query upstream
    ("GET", "/v1/x?api_key=a&api_key=b", "gw", ()),
    ("GET", "/ghost/x", "gw", ()),  # routed, then 404: no such service
]


def _sent(
    method: str, target: str, host: str | None, headers: tuple[tuple[str, str], ...]
) -> bytes:
    """The request as a client writes it (HTTP/1.0 without a Host), latin-1 like any head."""
    lines = [f"{method} {target} HTTP/{'1.1' if host is not None else '1.0'}"]
    lines += [f"Host: {host}"] if host is not None else []
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join([*lines, "", ""])).encode("latin-1")


@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "as-sent"])
@pytest.mark.parametrize(("method", "target", "host", "headers"), CASES)
def test_explain_says_what_the_engine_does_with_the_same_request(
    proxies: dict[bool, InProcessProxy],
    normalize: bool,
    method: str,
    target: str,
    host: str | None,
    headers: tuple[tuple[str, str], ...],
) -> None:
    proxy = proxies[normalize]
    engine = proxy.engine
    run = proxy.run([_sent(method, target, host, headers)])
    status_line, _, rest = bytes(run.to_client).partition(b"\r\n")
    status = int(status_line.split()[1])
    flags = next(
        (line[14:].decode() for line in rest.split(b"\r\n") if line[:14] == b"x-mesh-flags: "),
        "-",
    )

    node = Vantage(
        "gw", "gateway", engine.router, engine.directory, View(PRESETS["lan"]), {}, normalize
    )
    answer = explain(node, Question(method, target, host or "", headers), 0.0, 0.0)
    if answer.status:  # the engine answers itself, and nothing reaches the upstream
        assert (status, flags) == (answer.status, answer.flags), answer.error
        assert run.forwarded == []
    else:
        assert answer.chosen is not None
        [forwarded] = run.forwarded
        assert forwarded.target.decode("latin-1") == answer.chosen.target
        assert [d.service for d in answer.destinations] == ["svc"]
        assert status == 200
