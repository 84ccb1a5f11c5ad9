"""When a certificate is renewed: at two thirds of the life it had when it was received."""

from __future__ import annotations

# Renewing at two thirds leaves a third of the life to retry in when the CA is away.
SHARE = 2 / 3
# Never sooner than this after receiving one: a certificate that arrives (nearly) expired
# must not turn renewal into a busy loop against the CA.
FLOOR = 0.5


def renew_in(received: float, expires: float, now: float) -> float:
    """Seconds from `now` until renewal of a certificate received at `received` that
    expires at `expires` (all on one clock: epoch seconds)."""
    due = received + max(0.0, expires - received) * SHARE
    return max(0.0, max(due, received + FLOOR) - now)
