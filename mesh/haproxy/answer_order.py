"""Whether a sampled log line of a server comes right after its last one, nothing unseen between."""

from __future__ import annotations

from collections.abc import Set

from mesh.haproxy.log_lines import Request

Key = tuple[str, str]  # (service, server)


class AnswerOrder:
    """Reads the answer numbers a sampling HAProxy puts on its lines (render.py).

    Each answer of a server takes that server's next number in its HAProxy worker; a line
    without an answer (a timeout, a failed connection) carries how many answers the server
    had given when it was written. A line follows the last one given of its server when
    no numbered answer lies between them: the answer right after, or, for a line without
    one, no answer since. Anything else (a gap, lines out of order, another worker, no
    number) may hide successes, and is not taken to follow: a streak is only ever
    counted short, never long. Given only failures, it tells whether two were in a row.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Key, tuple[int, int]] = {}  # (worker, number) of the last line seen

    def follows(self, service: str, line: Request) -> bool:
        """Whether `line` comes right after the last line of its server; it is the last then."""
        key = (service, line.server)
        last = self._last.get(key)
        if line.answer is not None:
            now, before = line.answer, line.answer - 1
        elif line.answered is not None:
            now = before = line.answered
        else:
            self._last.pop(key, None)  # nothing to place it by, nor the next line by
            return False
        self._last[key] = (line.worker, now)
        return last == (line.worker, before)

    def retain(self, present: Set[Key]) -> None:
        """Forget the servers not in `present` (gone from every backend)."""
        for key in [key for key in self._last if key not in present]:
            del self._last[key]
