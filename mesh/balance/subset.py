"""Which endpoints to balance over: panic threshold first, then zone preference."""

from __future__ import annotations

from collections.abc import Sequence

from mesh.balance.config import BalanceConfig
from mesh.balance.endpoint import Endpoint


def panic(
    everyone: Sequence[Endpoint], healthy: Sequence[Endpoint], threshold: float
) -> tuple[Sequence[Endpoint], bool]:
    """(the set to balance over, whether panic is on), as Envoy's panic threshold.

    `everyone` holds every instance not yet gone, routable or not. When too few are
    healthy, the healthy ones alone would be crushed by the whole load: spreading it over
    everyone serves some requests rather than failing all of them.
    """
    if len(healthy) < threshold * len(everyone):
        return everyone, True
    return healthy, False


def prefer_zone(endpoints: Sequence[Endpoint], zone: str, min_local: int) -> Sequence[Endpoint]:
    """Only the endpoints in `zone` when it has at least `min_local` of them, else all."""
    if not zone:
        return endpoints
    local = [e for e in endpoints if e.zone == zone]
    return local if local and len(local) >= min_local else endpoints


def candidates(
    config: BalanceConfig, everyone: Sequence[Endpoint], healthy: Sequence[Endpoint]
) -> tuple[Sequence[Endpoint], bool]:
    """The set to balance over and whether panic is on; in panic zones are ignored (Envoy)."""
    chosen, panicking = panic(everyone, healthy, config.panic_threshold)
    if panicking:
        return chosen, True
    return prefer_zone(chosen, config.zone, config.min_local), False
