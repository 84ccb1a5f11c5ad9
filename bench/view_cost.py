"""CPU time of the membership view's upkeep at 100, 1,000 and 10,000 members (no network).

One full heartbeat folded in, one short beat, and the expiry read that each message
received costs later (its entry in a deadline queue). CPU time (process_time), so that a
machine shared with other work slows the figures less than wall time would.

    .venv/bin/python -m bench.view_cost
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Iterator

from mesh.membership import view as membership
from mesh.messages import Beat, Heartbeat, Message
from mesh.timing import PRESETS

RUNS = 1000


def heartbeat(index: int, seq: int) -> Heartbeat:
    service = f"svc{index % 300}"
    return Heartbeat(
        service=service, instance=f"i{index}", host="10.0.0.1", port=9000, incarnation=1, seq=seq
    )


def beat(index: int, seq: int) -> Beat:
    return Beat(service=f"svc{index % 300}", instance=f"i{index}", incarnation=1, seq=seq)


def built(size: int) -> membership.View:
    view = membership.View(PRESETS["lan"])
    for index in range(size):
        view, _ = membership.apply(view, heartbeat(index, 1), 0.0)
    return membership.tick(view, 0.1)[0]  # the build's own entries read


def per_message(view: membership.View, messages: Iterator[Message]) -> float:
    """Microseconds of CPU per message folded in (each a newer seq: none dropped)."""
    state = [view]

    def one() -> None:
        state[0], _ = membership.apply(state[0], next(messages), 0.5)

    return min(timeit.repeat(one, number=RUNS, repeat=3, timer=time.process_time)) / RUNS * 1e6


def main() -> None:
    print("members  heartbeat us  beat us  expiry read us/message")
    for size in (100, 1_000, 10_000):
        view = built(size)
        full = per_message(view, (heartbeat(i % size, 2 + i // size) for i in range(RUNS * 3)))
        short = per_message(view, (beat(i % size, 2 + i // size) for i in range(RUNS * 3)))
        heard = view
        for index in range(size):  # every member heard again: its first entry is stale
            heard, _ = membership.apply(heard, beat(index, 2), 0.5)
        tick = min(
            timeit.repeat(
                lambda view=heard: membership.tick(view, 0.75),  # type: ignore[misc]
                number=3,
                repeat=3,
                timer=time.process_time,
            )
        )
        print(f"{size:>7}  {full:12.1f}  {short:7.1f}  {tick / 3 / size * 1e6:22.2f}")


if __name__ == "__main__":
    main()
