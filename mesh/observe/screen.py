"""What `mesh top` prints: golden signals as fixed-width tables."""

from __future__ import annotations

from collections.abc import Sequence

from mesh.observe.traffic import InstanceRow, ServiceRow, Signals

# The order states are listed in, the healthiest first; others follow by name.
_STATE_ORDER = ("alive", "ejected", "failing", "draining", "suspect", "down", "left", "unknown")
_SIGNAL_HEADER = ("RPS", "SUCCESS", "P50", "P99", "INFLIGHT")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _signals(s: Signals) -> tuple[str, ...]:
    return (f"{s.rate:.1f}", share(s.success), seconds(s.p50), seconds(s.p99), str(s.inflight))


def states(counts: dict[str, int]) -> str:
    order = {state: index for index, state in enumerate(_STATE_ORDER)}
    ranked = sorted(counts, key=lambda state: (order.get(state, len(order)), state))
    return ", ".join(f"{counts[state]} {state}" for state in ranked) or "-"


def _table(header: tuple[str, ...], lines: Sequence[tuple[str, ...]]) -> str:
    every = [header, *lines]
    widths = [max(len(line[i]) for line in every) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in every
    )


def services_table(rows: Sequence[ServiceRow]) -> str:
    if not rows:
        return "no services"
    return _table(
        ("SERVICE", *_SIGNAL_HEADER, "INSTANCES"),
        [(r.service, *_signals(r.signals), states(r.states)) for r in rows],
    )


def instances_table(rows: Sequence[InstanceRow]) -> str:
    return _table(
        ("INSTANCE", "STATE", "ADDRESS", "ZONE", *_SIGNAL_HEADER),
        [
            (r.instance, r.state, r.address or "-", r.zone or "-", *_signals(r.signals))
            for r in rows
        ],
    )
