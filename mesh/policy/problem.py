"""A problem found in a policy document: where it is, the offending value, and what is accepted."""

from __future__ import annotations

from typing import Any

import msgspec

_SHOWN = 60  # characters of the offending value kept in the one-line form


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One error or warning about one document (or a whole file).

    `doc_index` counts documents in the file from 0 (None: the file as a whole); `path`
    is dotted (`retries.attempts`, `to[0].weight`; "" for the whole document); `value`
    is msgspec.UNSET when the field is missing.
    """

    file: str
    doc_index: int | None
    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        where = self.file if self.doc_index is None else f"{self.file}[{self.doc_index}]"
        if self.path:
            where = f"{where} {self.path}"
        if self.value is not msgspec.UNSET:
            shown = repr(self.value)
            if len(shown) > _SHOWN:
                shown = shown[: _SHOWN - 3] + "..."
            where = f"{where} = {shown}"
        return f"{where}: {self.message}"
