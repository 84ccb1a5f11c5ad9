"""What a balancer knows of one instance: its address, weight, zone, labels, and since when."""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: str
    instance: str
    host: str
    port: int
    weight: int
    zone: str
    meta: dict[str, str] = field(hash=False, compare=False)
    since: float = 0.0  # monotonic time it entered its state: slow start counts from here
    version: str = ""
    inbound_port: int | None = None  # its agent's inbound listener: dialled instead of `port`

    def label(self, key: str) -> str | None:
        """A subset key's value here: `version` and `zone` are labels like the metadata."""
        if key == "version" and self.version:
            return self.version
        if key == "zone" and self.zone:
            return self.zone
        return self.meta.get(key)

    def fits(self, subset: Sequence[tuple[str, str]]) -> bool:
        """Whether it carries every label of a route's `subset` (key, value pairs)."""
        return all(self.label(k) == v for k, v in subset)

    @property
    def address(self) -> tuple[str, int]:
        """Where it is dialled: its agent's inbound listener when it has one."""
        return self.host, self.inbound_port or self.port


def allowed(endpoints: Sequence[Endpoint], exclude: Set[str]) -> list[int]:
    """Indexes of the endpoints not in `exclude`; of them all when every one is excluded."""
    kept = [i for i, e in enumerate(endpoints) if e.instance not in exclude]
    return kept or list(range(len(endpoints)))
