"""Key files of edge authentication: read when a revision compiles, re-read when they change."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a request may look at the file (one stat): a rotated JWKS is in use within
# this long, and a busy route costs one system call per second, not one per request.
RECHECK = 1.0


class KeyFile(Generic[T]):
    """A file's contents as parsed by `parse`; a change that does not parse keeps the last
    good contents (logged), so a half-written file never locks every client out.

    A deleted file is no keys (None, logged) until it is back: deleting it is how an
    operator revokes, and keys nobody can see on disk must not go on verifying tokens.
    """

    __slots__ = ("_checked", "_parse", "_seen", "_value", "path")

    def __init__(self, path: str, parse: Callable[[bytes], T]) -> None:
        """Read it now; ValueError naming the file if it cannot be read or parsed."""
        self.path = path
        self._parse = parse
        self._checked: float | None = None
        self._seen: tuple[int, int, int] | None
        self._value: T | None
        try:
            self._seen = self._signature()
            self._value = parse(self._read())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {_reason(exc)}") from None

    def current(self, now: float) -> T | None:
        """The contents, re-read first if the file changed (looked at once per RECHECK);
        None while the file is deleted."""
        if self._checked is None or now - self._checked >= RECHECK:
            self._checked = now
            self._reload()
        return self._value

    def _reload(self) -> None:
        try:
            seen = self._signature()
            if seen == self._seen:
                return
            self._seen = seen
            self._value = self._parse(self._read())
        except FileNotFoundError:
            if self._seen is not None:
                log.warning("key file %s deleted: no key is accepted until it is back", self.path)
            self._seen = self._value = None
            return
        except (OSError, ValueError) as exc:
            log.warning(
                "key file %s changed but is unusable, keeping the last: %s", self.path, _reason(exc)
            )
            return
        log.info("key file %s reloaded", self.path)

    def _signature(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> bytes:
        with open(self.path, "rb") as file:
            return file.read(1 << 20)


def _reason(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
