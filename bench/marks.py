"""Marks: what names one message in a NATS connection's bytes, and when a reader saw it.

A revision delivered by a JetStream consumer carries its stream and sequence in its reply
subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<seq>...`, or the longer form with a
domain and an account hash first); a published event carries its id in a `Nats-Msg-Id`
header. Either is a mark: `js:<stream>:<seq>` or `id:<id>`. Only complete tokens count (a
reply ends with a space, a header with CRLF), so bytes cut mid-message never give a wrong
mark; the cut part is matched once the rest has come.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from typing import Any

from mesh import clock

_MARK = re.compile(rb"\$JS\.ACK\.([^ \r\n]+) |Nats-Msg-Id: ?([^\r\n]+)\r\n")
_CARRIED = 1024  # bytes of an unfinished line kept for the next read: a mark is shorter


def kv_mark(bucket: str, revision: int) -> str:
    """The mark of a key-value bucket's revision (its stream is KV_<bucket>)."""
    return f"js:KV_{bucket}:{revision}"


def event_mark(event_id: str) -> str:
    return f"id:{event_id}"


def marks(data: bytes) -> Iterator[str]:
    """Every complete mark in `data`, in order."""
    for found in _MARK.finditer(data):
        reply, msg_id = found.groups()
        if msg_id is not None:
            yield event_mark(msg_id.decode(errors="replace"))
            continue
        tokens = reply.split(b".")
        if len(tokens) == 7:  # stream.consumer.delivered.seq.cseq.time.pending
            stream, seq = tokens[0], tokens[3]
        elif len(tokens) >= 9:  # domain.hash.stream.consumer.delivered.seq.cseq.time.pending...
            stream, seq = tokens[2], tokens[5]
        else:
            continue
        yield f"js:{stream.decode(errors='replace')}:{seq.decode(errors='replace')}"


def note(seen: MutableMapping[str, float], data: bytes, now: float) -> None:
    """Record `now` for each mark in `data` not seen before."""
    for mark in marks(data):
        seen.setdefault(mark, now)


def first_seen(*times: float | None) -> float | None:
    """The earliest of several sightings of one message: each is after its arrival, so the
    earliest is the tightest bound that is still never before it."""
    return min((t for t in times if t is not None), default=None)


def note_reads(reader: Any, seen: MutableMapping[str, float]) -> None:
    """Note in `seen` when each mark first reached `reader` (nats-py's StreamReader): its
    loop hands it the bytes as soon as it reads the socket, before any task runs on them,
    so this is when its process had them, never before they arrived."""
    feed = reader.feed_data
    carried = b""

    def noted(data: bytes) -> None:
        nonlocal carried
        now = clock.wall()
        window = carried + data
        note(seen, window, now)
        carried = window[window.rfind(b"\n") + 1 :][-_CARRIED:]
        feed(data)

    reader.feed_data = noted


def note_writes(transport: Any, seen: MutableMapping[str, float]) -> None:
    """Note in `seen` when each mark was first written to `transport` (nats-py's: what it
    writes goes to the socket at once, or to asyncio's buffer when the socket is full)."""
    for name in ("write", "writelines"):
        write = getattr(transport, name)

        def noted(payload: Any, write: Any = write) -> Any:
            data = payload if isinstance(payload, bytes | bytearray) else b"".join(payload)
            note(seen, bytes(data), clock.wall())
            return write(payload)

        setattr(transport, name, noted)


def transport_of(client: Any) -> Any:
    """nats-py's transport of a connected client, checked to be the one this bench knows
    (as of nats-py 2.x: a StreamWriter in `_io_writer`)."""
    transport = getattr(client, "_transport", None)
    if getattr(transport, "_io_writer", None) is None:
        raise RuntimeError("nats-py's transport has changed: cannot stamp its socket")
    return transport


def socket_fd(transport: Any) -> int:
    return int(transport._io_writer.get_extra_info("socket").fileno())
