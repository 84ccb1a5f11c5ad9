"""Renewal at two thirds of the life a certificate had when it arrived."""

from __future__ import annotations

import pytest

from mesh.security.renewal import renew_in


@pytest.mark.parametrize(
    ("received", "expires", "now", "expected"),
    [
        (1000.0, 1000.0 + 86400, 1000.0, 57600.0),  # 24 h: renewed after 16 h
        (1000.0, 1000.0 + 86400, 1000.0 + 50000, 7600.0),  # asked again later
        (0.0, 3.0, 0.0, 2.0),  # a 3 s certificate: at 2 s
        (0.0, 3.0, 2.5, 0.0),  # overdue: at once
        (0.0, 0.3, 0.0, 0.5),  # arrived nearly expired: not before the floor
        (0.0, -10.0, 0.0, 0.5),  # arrived expired (a skewed clock): not a busy loop
        (0.0, -10.0, 5.0, 0.0),
    ],
)
def test_renew_in(received: float, expires: float, now: float, expected: float) -> None:
    assert renew_in(received, expires, now) == pytest.approx(expected)
