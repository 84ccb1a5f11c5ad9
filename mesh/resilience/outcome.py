"""What one attempt on an instance came to: the input of every resilience decision."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    CONNECT_FAILURE = "connect-failure"  # no connection: connect timed out, host unreachable
    REFUSED = "refused"  # nothing listening (ECONNREFUSED): the process is gone
    RESET = "reset"  # closed or reset before a response head came back
    TIMEOUT = "timeout"  # the per-try timeout ran out before a response head came back
    RESPONSE = "response"  # a response head came back, with `status`


# Signals strong enough to act on one sighting: only a process that is gone fails that way.
HARD = frozenset({Kind.REFUSED, Kind.RESET})
_NOT_CONNECTED = frozenset({Kind.CONNECT_FAILURE, Kind.REFUSED})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result; prefer the shared constants and `response()`, which allocate nothing.

    `sent` says whether any byte of the request was written to the connection, so it may
    have reached the upstream; only a request that was not sent is safe to send again
    whatever its method. A reused pooled connection that turns out closed is not RESET:
    the engine resends on a fresh one and that is no evidence against the instance.
    """

    kind: Kind
    status: int = 0  # the response status; 0 when no response came back
    sent: bool = False

    def __post_init__(self) -> None:
        if self.kind is Kind.RESPONSE:
            if not (100 <= self.status <= 999 and self.sent):
                raise ValueError("a response has a status in 100..999 and was sent")
        elif self.status:
            raise ValueError(f"{self.kind.value} has no status")
        elif self.kind in _NOT_CONNECTED and self.sent:
            raise ValueError(f"{self.kind.value}: nothing can have been sent")


CONNECT_FAILURE = Outcome(Kind.CONNECT_FAILURE)
REFUSED = Outcome(Kind.REFUSED)
RESET = Outcome(Kind.RESET, sent=True)
TIMEOUT = Outcome(Kind.TIMEOUT, sent=True)

_RESPONSES = tuple(Outcome(Kind.RESPONSE, status, True) for status in range(100, 600))


def response(status: int) -> Outcome:
    """The outcome of a response with `status`, shared for the usual 100..599."""
    if 100 <= status < 600:
        return _RESPONSES[status - 100]
    return Outcome(Kind.RESPONSE, status, True)
