"""A node's answers to `mesh explain` on an in-memory bus: where it listens, what it says."""

from __future__ import annotations

import msgspec
import pytest
from factories import new_view
from memory_bus import MemoryHub
from waiting import settle

from mesh import clock, subjects
from mesh.errors import NoResponders
from mesh.forwarding.directory import Directory
from mesh.forwarding.explanation import Explanation, Problem, Question
from mesh.forwarding.routing import DefaultRoutes
from mesh.metrics import Metrics
from mesh.node.explainer import Explainer
from mesh.observe.explain_answer import Vantage


async def test_a_gateway_answers_on_its_subjects_and_says_what_it_cannot_read() -> None:
    hub = MemoryHub()
    metrics = Metrics()
    node = Vantage("gw-1", "gateway", DefaultRoutes(lambda _: False), Directory(), new_view(), {})
    await Explainer(
        hub.bus(),
        gateway=True,
        service="edge",
        instance="gw-1",
        state=lambda: node,
        clock=clock,
        metrics=metrics,
    ).start()
    await settle()
    asker = hub.bus()
    good = msgspec.json.encode(Question("GET", "/hello/x"))
    for to in (subjects.EXPLAIN, subjects.explain("edge"), subjects.explain("edge", "gw-1")):
        answer = msgspec.json.decode(await asker.request(to, good, 1.0), type=Explanation)
        assert (answer.node, answer.error) == (
            "gw-1",
            "no service matches Host '' or path '/hello/x'",
        )
    with pytest.raises(NoResponders):
        await asker.request(subjects.explain("edge", "gw-2"), good, 1.0)
    for bad in (
        b"{",
        b'{"method": "GET", "target": "/", "host": "\\u2603"}',
        b'{"method": "GET", "target": "/a\\r\\nx-injected: 1"}',  # not one request head
    ):
        problem = msgspec.json.decode(await asker.request(subjects.EXPLAIN, bad, 1.0), type=Problem)
        assert problem.node == "gw-1"
        assert problem.error.startswith("unreadable question: ")
    assert metrics.bus_invalid == {"explain": 3}
