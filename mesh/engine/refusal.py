"""A request refused before an exchange began: counted, logged and tapped as exchanges are."""

from __future__ import annotations

from mesh import errors
from mesh.engine import access_log, replies
from mesh.engine.engine import Engine
from mesh.forwarding.routing import Routed
from mesh.messages import RequestRecord


class Refusal:
    """What the client connection knew of a request it refused as it arrived (a head that
    does not parse, 400; one too slow, 408; a body too large, 413; a head too large, 431).

    Method, target and authority are what was parsed before the refusal, empty otherwise;
    the request id is the client's when its head was whole, else a new one.
    The duration runs from the head's first byte, on the loop's clock: a refusal is made
    at once or by a timeout, not timed to the microsecond.
    """

    __slots__ = (
        "authority",
        "began",
        "bytes_in",
        "bytes_out",
        "engine",
        "error",
        "flags",
        "method",
        "peer",
        "request_id",
        "seconds",
        "status",
        "target",
    )

    routed: Routed | None = None  # refused before routing

    def __init__(
        self,
        engine: Engine,
        error: errors.ProxyError,
        *,
        method: bytes,
        target: bytes,
        authority: bytes,
        bytes_in: int,
        peer: bytes,
        request_id: bytes,
        began: float,
    ) -> None:
        self.engine = engine
        self.error = error
        self.method = method
        self.target = target
        self.authority = authority
        self.bytes_in = bytes_in
        self.peer = peer
        self.request_id = request_id
        self.began = began
        self.status, self.flags = replies.classify(error)
        self.seconds = 0.0
        self.bytes_out = 0

    def answer(self) -> bytes:
        """The answer to write, the connection's last; counted, logged and tapped here."""
        engine = self.engine
        answer = replies.render(
            self.error, request_id=self.request_id, keep_alive=False, date=engine.date
        )
        self.bytes_out = replies.body_length(answer)
        self.seconds = engine.loop.time() - self.began
        engine.metrics.request_done("", "", self.status, self.flags, self.seconds)
        log = engine.access_log
        if log is not None:
            log.write(self.record(log.timestamp()))
        if engine.taps is not None:
            engine.taps.offer(self)
        return answer

    def record(self, time: str) -> RequestRecord:
        return access_log.request_record(
            time,
            self.engine.directory.node,
            request_id=self.request_id,
            method=self.method,
            authority=self.authority,
            target=self.target,
            status=self.status,
            flags=self.flags,
            seconds=self.seconds,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            peer=self.peer,
        )
