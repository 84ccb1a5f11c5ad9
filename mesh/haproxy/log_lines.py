"""HAProxy's log lines read as the mesh's vocabulary: a finished request, or a server gone down."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mesh.haproxy.layout import FRONTEND, LOG_FIELDS, service_of
from mesh.resilience import outcome
from mesh.resilience.outcome import Outcome

NO_SERVER = "<NOSRV>"


@dataclass(frozen=True, slots=True)
class Request:
    """One request HAProxy finished (layout.log_format), its times in seconds."""

    backend: str  # layout.FRONTEND when HAProxy answered before choosing one
    server: str  # NO_SERVER when HAProxy answered itself
    status: int  # -1: no response was sent (the client left first)
    termination: str  # HAProxy's 4-character termination state, `----` when all went well
    retries: int
    redispatched: bool
    connect: float  # -1.0: no connection was made
    response: float  # -1.0: no response head came back
    total: float
    worker: int  # the HAProxy worker's pid: a reload's old and new workers number apart
    answer: int | None  # the server's number for this answer (sampling only, render.py)
    answered: int | None  # the server's answers by the time of this line (sampling only)
    route: str  # "" when no route matched
    replied_flags: str  # the answer's x-mesh-flags ("" for none), the proxy's or not
    method: str
    path: str
    request_id: str

    @property
    def service(self) -> str:
        """The service of the backend (`hello.1f2e3d4c` is hello's subset); "" for none."""
        if self.backend == FRONTEND or not self.route:
            return ""
        return service_of(self.backend)

    @property
    def flags(self) -> str:
        """The Python engine's `x-mesh-flags` for what HAProxy did (mesh.engine.replies)."""
        by, at = self.termination[:1], self.termination[1:2]
        if self.status == -1 or (by == "C" and at in ("D", "H")):
            return "DC"  # the client went away: Envoy's downstream disconnect
        if self.server == NO_SERVER:  # HAProxy's own answer carries the engine's flag
            return self.replied_flags or "-"
        # What the client was told (docs/haproxy.md: no URX); an upstream's own
        # x-mesh-flags are not this node's.
        return _FAILURE_FLAGS.get(self.termination[:2], "-")

    def outcome(self) -> Outcome | None:
        """What the last attempt on `server` came to, as the outlier detectors take it;
        None when no server was tried or the client ended it first."""
        if self.server == NO_SERVER:
            return None
        kind = _FAILURE_OUTCOMES.get(self.termination[:2])
        if kind is not None:
            return kind
        if self.response >= 0 and self.status >= 100:
            return outcome.response(self.status)
        return None


# Termination states (first: who ended it, second: at which stage) that are the server's
# failure, as the Python engine's flags and outcomes name them.
_FAILURE_FLAGS = {"SC": "UF", "sC": "UF", "sH": "UT", "SH": "UC", "PH": "UPE", "SD": "UC"}
_FAILURE_OUTCOMES = {
    "SC": outcome.REFUSED,
    "sC": outcome.CONNECT_FAILURE,
    "sH": outcome.TIMEOUT,
    "SH": outcome.RESET,
    # An invalid response head: the engine counts it a 502 from the instance (a 5xx
    # streak), not a reset, which would eject on one sighting.
    "PH": outcome.response(502),
}


@dataclass(frozen=True, slots=True)
class ServerDown:
    """HAProxy took a server out on its own (`observe`): a refused connection, say."""

    backend: str
    server: str
    reason: str


# "Server hello/hello-a is DOWN, reason: Health analyze, info: "Detected 1 consecutive
# errors, last one was: L4 unsuccessful connection". 1 active and ..."
_DOWN = re.compile(r"Server ([^/\s]+)/(\S+) is DOWN, reason: ([^,]*)(?:, info: \"([^\"]*)\")?")


def parse(line: str) -> Request | ServerDown | None:
    """A log line as a Request or a ServerDown; None for the others HAProxy sends
    (a server back up, a reload's notices) and for lines that are not ours (malformed)."""
    fields = line.rstrip("\n").split("\t", len(LOG_FIELDS) - 1)
    if len(fields) == len(LOG_FIELDS):
        return _request(fields)
    down = _DOWN.search(line)
    if down is not None and down.group(3) == "Health analyze":
        return ServerDown(down.group(1), down.group(2), down.group(4) or down.group(3))
    return None


def _request(fields: list[str]) -> Request | None:
    backend, server, status, termination, retries, connect, response, total = fields[:8]
    worker, answer, answered, route, flags, method, path, request_id = fields[8:]
    try:
        return Request(
            backend=backend,
            server=server,
            status=int(status),
            termination=termination,
            retries=int(retries.lstrip("+")),
            redispatched=retries.startswith("+"),
            connect=_seconds(connect),
            response=_seconds(response),
            total=_seconds(total),
            worker=int(worker),
            answer=_number(answer),
            answered=_number(answered),
            route="" if route == "-" else route,
            replied_flags="" if flags == "-" else flags,
            method=method,
            path=path,
            request_id=request_id,
        )
    except ValueError:
        return None


def _number(field: str) -> int | None:
    return None if field in ("-", "") else int(field)


def _seconds(milliseconds: str) -> float:
    value = int(milliseconds)
    return -1.0 if value < 0 else value / 1000
