"""The measuring side of bench.propagation: wait for every node, apply, hear every ack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bench.console import BenchError, say
from mesh import clock
from mesh.bus import NatsBus
from mesh.config import Settings
from mesh.forwarding.defaults import default_service
from mesh.membership.census import Watch, live
from mesh.membership.view import GONE, View
from policies.acks import AckCollector
from policies.loader import load_text
from policies.plan import plan
from policies.store import PolicyStore

DOCUMENT = "kind: Service\nname: bench-svc\ntimeouts: {{connect: 1s, request: {request}s}}\n"


@dataclass
class Expected:
    """Who must come up: the fleets' nodes by name, the gateways by count."""

    fleets: dict[str, list[str]]  # fleet label -> its nodes' names
    gateways: int

    def missing(self, nodes: Mapping[str, str]) -> list[str]:
        """What is not live yet, one phrase per fleet or the gateways; [] when all are."""
        phrases = []
        for fleet, names in self.fleets.items():
            absent = [name for name in names if name not in nodes]
            if absent:
                shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
                phrases.append(f"{fleet}: {len(absent)} of {len(names)} nodes ({shown})")
        gateways = sum(1 for role in nodes.values() if role == "gateway")
        if gateways < self.gateways:
            phrases.append(f"gateways: {self.gateways - gateways} of {self.gateways}")
        return phrases


def present(view: View) -> dict[str, str]:
    """Instance -> role of every node not gone (alive, suspect or draining)."""
    return {m.instance: m.record.role for m in view.members.values() if m.state not in GONE}


@dataclass
class Apply:
    written: float  # wall seconds when the write began
    revisions: dict[str, int]
    received: dict[str, float] = field(default_factory=dict)  # node -> wall seconds
    cpu: dict[str, float] = field(default_factory=dict)  # group -> CPU seconds, write to last ack


CpuProbe = Callable[[], dict[str, float]]  # CPU seconds so far, per group of processes


def used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {group: after[group] - before[group] for group in before}


async def wait_for_nodes(
    settings: Settings, expected: Expected, within: float, check: Callable[[], None]
) -> dict[str, str]:
    """Every expected node live in one census view, within `within` s, or a BenchError
    naming what is not; `check` raises if a child process died meanwhile.

    The census has a connection of its own, closed at the end: every heartbeat of a
    thousand nodes would otherwise reach the collector while it times the applies.
    A suspect node (late heartbeats: a starved process) still counts, and must still
    acknowledge every apply; it is named.
    """
    bus = NatsBus(settings, name="bench-propagation-census")
    await bus.start(wait=10)
    try:
        watch = Watch(settings.timing)
        await watch.start(bus, asker="bench-propagation")
        began = clock.monotonic()
        while True:
            await asyncio.sleep(0.5)
            check()
            view = watch.current(clock.monotonic())
            nodes = present(view)
            missing = expected.missing(nodes)
            if not missing:
                say(f"{len(nodes)} nodes up after {clock.monotonic() - began:.1f} s")
                late = sorted(set(nodes) - set(live(view)))
                if late:
                    say(f"{len(late)} of them suspect (heartbeats late): {', '.join(late[:10])}")
                return nodes
            if clock.monotonic() - began > within:
                raise BenchError(f"not up within {within:g} s: " + "; ".join(missing))
    finally:
        await bus.close()


async def apply_all(
    bus: NatsBus,
    settings: Settings,
    nodes: Mapping[str, str],
    applies: int,
    ack_within: float,
    cpu: CpuProbe,
) -> list[Apply]:
    """`applies` writes (after one to warm up), each acknowledged by every node, or a
    BenchError naming the nodes that did not answer."""
    store = PolicyStore(bus)
    await store.open()
    collector = AckCollector(bus, nodes)
    await collector.start()
    done: list[Apply] = []
    for i in range(applies + 1):
        document = DOCUMENT.format(request=f"{5 + i * 0.01:.2f}")
        loaded = load_text(document, defaults=default_service(settings))
        if loaded.errors:
            raise BenchError(f"the benchmark's own document is invalid: {loaded.errors[0]}")
        changes = plan(loaded.documents, await store.stored(), prune=False)
        if not changes:
            raise BenchError(f"apply {i} would change nothing")
        await asyncio.sleep(0.3)  # the last apply's acks and events settle first
        cpu_before = cpu()
        wall, started, ours = clock.wall(), clock.monotonic(), time.process_time()
        revisions = await store.write(changes)
        collector.expect(revisions, started)
        if not await collector.wait(ack_within):
            silent = [n for n, ack in collector.nodes.items() if not collector.answered(ack)]
            shown = ", ".join(sorted(silent)[:10]) + (", ..." if len(silent) > 10 else "")
            raise BenchError(
                f"apply {i}: {len(silent)} of {len(nodes)} nodes did not acknowledge "
                f"within {ack_within:g} s: {shown}"
            )
        ours = time.process_time() - ours  # before the probe: its own scan is not ours
        cpu_used = {**used(cpu_before, cpu()), "collector": ours}
        report, clean = collector.report()
        if not clean:
            raise BenchError(f"apply {i}: not applied everywhere:\n{report}")
        if i == 0:
            continue  # warms the watches and the collector up; not counted
        key = next(iter(revisions))
        done.append(
            Apply(
                wall,
                revisions,
                {n: wall + ack.answers[key][3] - started for n, ack in collector.nodes.items()},
                cpu_used,
            )
        )
    return done
