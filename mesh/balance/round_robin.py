"""Round robin: each endpoint in turn (smooth weighted round robin arrives with weights)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def pick(endpoints: Sequence[T], cursor: int) -> tuple[T, int]:
    """The endpoint at `cursor` (modulo their count) and the cursor for the next pick."""
    index = cursor % len(endpoints)
    return endpoints[index], index + 1
