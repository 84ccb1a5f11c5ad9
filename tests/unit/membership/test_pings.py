"""How soon the servers close a silent client, from their varz answers: a table."""

from __future__ import annotations

import json

import pytest

from mesh.membership.pings import closes_within


def varz(interval_s: float, ping_max: int) -> bytes:
    data = {"ping_interval": int(interval_s * 1e9), "ping_max": ping_max, "other": 1}
    return json.dumps({"server": {"id": "N1"}, "data": data}).encode()


@pytest.mark.parametrize(
    ("answers", "expected", "why"),
    [
        (
            [varz(0.75, 2)],
            3.0,
            "a ping every 0.75 s, closed at the second unanswered, after"
            " up to one skipped while the client was busy",
        ),
        ([varz(1, 2)], 4.0, "1 s pings: 4 s, past the lan preset's 3 s"),
        ([varz(120, 2)], 480.0, "NATS's defaults"),
        ([varz(0.75, 2), varz(20, 3)], 100.0, "a cluster: its slowest server decides"),
        ([], None, "nobody answered"),
        ([varz(1, 2), b"{not json"], None, "one server unreadable: unknown"),
        ([json.dumps({"data": {"ping_max": 2}}).encode()], None, "no interval"),
        ([varz(0, 2)], None, "no pings at all"),
    ],
)
def test_closes_within(answers: list[bytes], expected: float | None, why: str) -> None:
    assert closes_within(answers) == expected, why
