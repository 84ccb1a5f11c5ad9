"""`access.allow_from` decisions: who may call a service, from the caller's identity."""

from __future__ import annotations

import pytest

from mesh.policy.access import allowed


@pytest.mark.parametrize(
    ("allow_from", "caller", "expected"),
    [
        (None, None, True),  # no access rules: anyone, even without a certificate
        (None, "shop", True),
        (frozenset({"checkout"}), "checkout", True),
        (frozenset({"checkout"}), "frontend", False),
        (frozenset({"checkout"}), None, False),  # plain text (permissive): nobody to admit
        (frozenset({"*"}), "frontend", True),
        (frozenset({"*"}), None, False),  # `*` is any mesh identity, not anyone
        (frozenset(), "checkout", False),  # an empty list admits nobody
        (frozenset({"checkout", "gateway"}), "gateway", True),
        (frozenset({"Checkout"}), "checkout", False),  # names are exact
    ],
)
def test_allowed(allow_from: frozenset[str] | None, caller: str | None, expected: bool) -> None:
    assert allowed(allow_from, caller) is expected
