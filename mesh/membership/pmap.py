"""A persistent hash map (a hash array mapped trie): `set` and `delete` return a new map.

An update copies the path from the root to one key, at most a handful of 32-slot nodes,
and shares everything else with the map it came from, which stays valid and unchanged.
So a membership view updated for one heartbeat costs O(log32 N), not a copy of N members.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_BITS = 5
_MASK = (1 << _BITS) - 1
_HASH = (1 << 64) - 1  # Python hashes are signed; the trie reads 64 unsigned bits


class _Node:
    """`bitmap` says which of the 32 slots of this level are taken; `slots` holds only
    those, each a (key, value) leaf, a deeper _Node, or a _Collision."""

    __slots__ = ("bitmap", "slots")

    def __init__(self, bitmap: int, slots: tuple[Any, ...]) -> None:
        self.bitmap = bitmap
        self.slots = slots


class _Collision:
    """Keys whose 64 hash bits are all equal: a plain tuple of leaves."""

    __slots__ = ("hash", "slots")

    def __init__(self, hash_: int, slots: tuple[tuple[Any, Any], ...]) -> None:
        self.hash = hash_
        self.slots = slots


_EMPTY_NODE = _Node(0, ())
_MISSING = object()


def _pair(
    shift: int, hash1: int, leaf1: tuple[Any, Any], hash2: int, leaf2: tuple[Any, Any]
) -> Any:
    """The smallest subtree holding two leaves whose keys differ."""
    if hash1 == hash2:
        return _Collision(hash1, (leaf1, leaf2))
    bit1, bit2 = (hash1 >> shift) & _MASK, (hash2 >> shift) & _MASK
    if bit1 == bit2:
        return _Node(1 << bit1, (_pair(shift + _BITS, hash1, leaf1, hash2, leaf2),))
    slots = (leaf1, leaf2) if bit1 < bit2 else (leaf2, leaf1)
    return _Node((1 << bit1) | (1 << bit2), slots)


def _set(node: Any, shift: int, hash_: int, key: Any, value: Any) -> tuple[Any, bool]:
    """The subtree with key set to value, and whether the key is new."""
    if type(node) is _Collision:
        if node.hash != hash_:  # a different key hashing apart: split below this level
            return _wrap(shift, node, hash_, (key, value)), True
        for index, (k, _) in enumerate(node.slots):
            if k == key:
                return _Collision(hash_, _replaced(node.slots, index, (key, value))), False
        return _Collision(hash_, (*node.slots, (key, value))), True
    bit = 1 << ((hash_ >> shift) & _MASK)
    index = (node.bitmap & (bit - 1)).bit_count()
    if not node.bitmap & bit:
        slots = (*node.slots[:index], (key, value), *node.slots[index:])
        return _Node(node.bitmap | bit, slots), True
    entry = node.slots[index]
    if type(entry) is tuple:
        if entry[0] == key:
            new: Any = (key, value)
            added = False
        else:
            new = _pair(shift + _BITS, hash(entry[0]) & _HASH, entry, hash_, (key, value))
            added = True
    else:
        new, added = _set(entry, shift + _BITS, hash_, key, value)
    return _Node(node.bitmap, _replaced(node.slots, index, new)), added


def _replaced(slots: tuple[Any, ...], index: int, new: Any) -> tuple[Any, ...]:
    """`slots` with the one at `index` replaced (a list copy: faster than slicing twice)."""
    changed = list(slots)
    changed[index] = new
    return tuple(changed)


def _wrap(shift: int, collision: _Collision, hash_: int, leaf: tuple[Any, Any]) -> _Node:
    """A node at `shift` holding a collision node and a leaf of another hash."""
    bit1, bit2 = (collision.hash >> shift) & _MASK, (hash_ >> shift) & _MASK
    if bit1 == bit2:
        return _Node(1 << bit1, (_wrap(shift + _BITS, collision, hash_, leaf),))
    slots = (collision, leaf) if bit1 < bit2 else (leaf, collision)
    return _Node((1 << bit1) | (1 << bit2), slots)


def _delete(node: Any, shift: int, hash_: int, key: Any) -> Any:
    """The subtree without `key`: the same object if it was absent, None when it empties,
    a lone leaf when one is left (the parent holds it directly)."""
    if type(node) is _Collision:
        slots = tuple(leaf for leaf in node.slots if leaf[0] != key)
        if len(slots) == len(node.slots):
            return node
        return slots[0] if len(slots) == 1 else _Collision(node.hash, slots)
    bit = 1 << ((hash_ >> shift) & _MASK)
    if not node.bitmap & bit:
        return node
    index = (node.bitmap & (bit - 1)).bit_count()
    entry = node.slots[index]
    if type(entry) is tuple:
        if entry[0] != key:
            return node
        new = None
    else:
        new = _delete(entry, shift + _BITS, hash_, key)
        if new is entry:
            return node
    if new is None:
        bitmap = node.bitmap & ~bit
        slots = node.slots[:index] + node.slots[index + 1 :]
        if not bitmap:
            return None
        if len(slots) == 1 and type(slots[0]) is tuple:
            return slots[0]
        return _Node(bitmap, slots)
    if len(node.slots) == 1 and type(new) is tuple:
        return new
    return _Node(node.bitmap, _replaced(node.slots, index, new))


def _leaves(node: Any) -> Iterator[tuple[Any, Any]]:
    for entry in node.slots:
        if type(entry) is tuple:
            yield entry
        else:
            yield from _leaves(entry)


class PMap(Mapping[K, V], Generic[K, V]):
    """An immutable mapping; `set` and `delete` return a new one sharing most of it."""

    __slots__ = ("_len", "_root")

    def __init__(self, items: Mapping[K, V] | None = None) -> None:
        self._root: _Node = _EMPTY_NODE
        self._len = 0
        for key, value in (items or {}).items():
            self._root, added = _set(self._root, 0, hash(key) & _HASH, key, value)
            self._len += added

    @classmethod
    def _made(cls, root: _Node, length: int) -> PMap[K, V]:
        new: PMap[K, V] = cls.__new__(cls)
        new._root, new._len = root, length
        return new

    def __getitem__(self, key: K) -> V:
        found = self._find(key)
        if found is _MISSING:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]

    def get(self, key: K, default: Any = None) -> Any:
        """The value of `key`, else `default` (no exception raised and caught on a miss)."""
        found = self._find(key)
        return default if found is _MISSING else found

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not _MISSING

    def _find(self, key: object) -> Any:
        hash_ = hash(key) & _HASH
        node: Any = self._root
        shift = 0
        while True:
            if type(node) is _Collision:
                for k, value in node.slots:
                    if k == key:
                        return value
                return _MISSING
            bit = 1 << ((hash_ >> shift) & _MASK)
            if not node.bitmap & bit:
                return _MISSING
            entry = node.slots[(node.bitmap & (bit - 1)).bit_count()]
            if type(entry) is tuple:
                return entry[1] if entry[0] == key else _MISSING
            node = entry
            shift += _BITS

    def __iter__(self) -> Iterator[K]:
        return (key for key, _ in _leaves(self._root))

    def __len__(self) -> int:
        return self._len

    def items(self) -> Iterator[tuple[K, V]]:  # type: ignore[override]
        """(key, value) pairs without a lookup per key."""
        return _leaves(self._root)

    def values(self) -> Iterator[V]:  # type: ignore[override]
        return (value for _, value in _leaves(self._root))

    def set(self, key: K, value: V) -> PMap[K, V]:
        root, added = _set(self._root, 0, hash(key) & _HASH, key, value)
        return PMap._made(root, self._len + added)

    def delete(self, key: K) -> PMap[K, V]:
        """Without `key` (the same map when it is absent)."""
        root = _delete(self._root, 0, hash(key) & _HASH, key)
        if root is self._root:
            return self
        if root is None:
            root = _EMPTY_NODE
        elif type(root) is tuple:  # a lone leaf: the root is always a node
            root = _set(_EMPTY_NODE, 0, hash(root[0]) & _HASH, root[0], root[1])[0]
        return PMap._made(root, self._len - 1)

    def __repr__(self) -> str:
        return f"PMap({dict(self.items())!r})"
