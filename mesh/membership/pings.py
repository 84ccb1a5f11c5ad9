"""How soon the NATS servers close a silent client, from their own settings (varz)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

NANOSECONDS = 1e9


class _Settings(msgspec.Struct, frozen=True):
    ping_interval: int  # nanoseconds (a Go duration)
    ping_max: int


class _Answer(msgspec.Struct, frozen=True):
    data: _Settings


_answer = msgspec.json.Decoder(_Answer)


def closes_within(answers: Iterable[bytes]) -> float | None:
    """Seconds after a client's last sign of life by which every server that answered
    has closed it. A server pings every ping_interval and closes the client when ping_max
    pings are unanswered; but it skips a ping while the client sent anything within the
    last interval, so a client busy until it hung is closed up to one interval later:
    ping_interval x (ping_max + 2) at most. None if no answer could be read: then nobody
    knows, and nobody may rely on it."""
    worst: float | None = None
    for data in answers:
        try:
            settings = _answer.decode(data).data
        except msgspec.DecodeError:
            return None  # a server we cannot read may close silent clients never
        if settings.ping_interval <= 0 or settings.ping_max < 0:
            return None
        seconds = settings.ping_interval / NANOSECONDS * (settings.ping_max + 2)
        worst = seconds if worst is None else max(worst, seconds)
    return worst
