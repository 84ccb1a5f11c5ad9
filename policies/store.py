"""The policy bucket as the CLI sees it: read, write with compare-and-set, history, rollback."""

from __future__ import annotations

from collections.abc import Sequence

from mesh import subjects
from mesh.bus import NatsBus
from mesh.bus.kv import KvEntry, KvStore
from mesh.config import Settings
from mesh.errors import BusRefused, ConfigError
from policies.plan import Change, Stored


def bus_for(settings: Settings) -> NatsBus:
    return NatsBus(settings, name="mesh-policy")


class PolicyStore:
    def __init__(self, bus: NatsBus) -> None:
        self.kv = KvStore(bus, subjects.POLICY_BUCKET)

    async def open(self) -> None:
        await self.kv.open(history=subjects.POLICY_HISTORY)

    async def stored(self) -> dict[str, Stored]:
        return {e.key: Stored(e.value, e.revision) for e in await self.kv.entries()}

    async def write(self, changes: Sequence[Change]) -> dict[str, int]:
        """Write each change with compare-and-set; returns key -> new revision.

        A Conflict stops the writes at the first key someone else changed since it was
        read; keys before it are written (each write is atomic, the set is not).
        """
        revisions: dict[str, int] = {}
        try:
            for change in changes:
                if change.action == "delete":
                    await self.kv.delete(change.key, expected_revision=change.expected_revision)
                    entry = await self._latest(change.key)
                    revisions[change.key] = entry.revision if entry else 0
                else:
                    revisions[change.key] = await self.kv.put(
                        change.key, change.value, expected_revision=change.expected_revision
                    )
        except BusRefused as exc:  # the bucket's subjects are the admin role's alone
            raise BusRefused(
                f"only the policy admin may write policies (the admin role of "
                f"`mesh nats creds`); {exc}"
            ) from None
        return revisions

    async def _latest(self, key: str) -> KvEntry | None:
        history = await self.kv.history(key)
        return history[-1] if history else None

    async def history(self, key: str) -> list[KvEntry]:
        return await self.kv.history(key)

    async def resolve(self, name: str) -> str:
        """`route/hello`, `route.hello` or a bare `hello` (if only one kind has it) -> key."""
        if "/" in name or "." in name:
            kind, _, rest = name.replace("/", ".").partition(".")
            return f"{kind.lower()}.{rest}"
        keys = [k for k in (await self.stored()) if k.partition(".")[2] == name]
        if len(keys) == 1:
            return keys[0]
        if not keys:
            raise ConfigError(f"no policy named {name!r} (try route/{name} or service/{name})")
        raise ConfigError(f"{name!r} is ambiguous: {', '.join(sorted(keys))}")
