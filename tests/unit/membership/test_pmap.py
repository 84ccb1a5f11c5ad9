"""mesh.membership.pmap: a persistent map acts as a dict, and every older map stays as it was."""

from __future__ import annotations

import random

import pytest

from mesh.membership.pmap import PMap


class Clashing:
    """A key whose hash is chosen: many keys share few hashes, down to all 64 bits."""

    def __init__(self, name: int, hash_: int) -> None:
        self.name, self.hash = name, hash_

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Clashing) and other.name == self.name

    def __repr__(self) -> str:
        return f"Clashing({self.name}, {self.hash})"


def keys(rng: random.Random, clashing: bool) -> list[object]:
    if not clashing:
        return [f"i{n}" for n in range(300)]
    # Same hash, same low bits with different high bits, negative: every trie path.
    hashes = [1, 2, 1 << 40, (1 << 40) + 1, -5, -(1 << 62), rng.getrandbits(64)]
    return [Clashing(n, rng.choice(hashes)) for n in range(40)]


@pytest.mark.parametrize("clashing", [False, True], ids=["strings", "clashing-hashes"])
@pytest.mark.parametrize("seed", range(2))
def test_random_sets_and_deletes_agree_with_a_dict_and_leave_every_older_map_alone(
    seed: int, clashing: bool
) -> None:
    rng = random.Random(seed)
    pool = keys(rng, clashing)
    pmap: PMap[object, float] = PMap()
    model: dict[object, float] = {}
    history: list[tuple[PMap[object, float], dict[object, float]]] = []
    for _ in range(500):
        key = rng.choice(pool)
        history.append((pmap, dict(model)))
        if rng.random() < 0.6:
            value = rng.random()
            pmap, model[key] = pmap.set(key, value), value
        else:
            pmap = pmap.delete(key)
            model.pop(key, None)
        assert len(pmap) == len(model)
        assert pmap.get(key) == model.get(key)
        assert (key in pmap) == (key in model)
    assert dict(pmap.items()) == model
    assert sorted(map(repr, pmap)) == sorted(map(repr, model))
    assert pmap == model  # a Mapping compares with a dict
    for old, then in history[::37]:
        assert dict(old.items()) == then


def test_a_missing_key_raises_and_deleting_it_returns_the_same_map() -> None:
    pmap = PMap({"a": 1})
    with pytest.raises(KeyError):
        pmap["b"]
    assert pmap.delete("b") is pmap
    assert pmap.delete("a") == {}
    assert len(pmap.delete("a")) == 0
    assert list(PMap().values()) == []
