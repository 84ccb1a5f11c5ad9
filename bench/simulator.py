"""Many instance records heartbeating from one process: the mesh's own Announcer, one NATS link.

    python -m bench.simulator --total 10000 --process 0 --processes 4 \
        --callees callee-0=9001,callee-1=9002,callee-2=9003

Every record is announced by a real mesh.membership.announcer.Announcer, whatever the
heartbeat protocol is, all of this process's sharing one NATS connection. Starts are spread
over `--ramp` seconds (one heartbeat interval unless told), so that the fleet's beats are
spread evenly and it arrives as fast as asked. The announcers beat slowly while a presence
watcher covers them (mesh.membership.coverage), as a node does.

SIGUSR1 kills the victims (bench.records.victims) at once, without a leave. With
`--presence`, each victim has a NATS connection of its own under its node's name, and
dies as a process does: that connection closes, and the server's advisory tells the
watcher. Without, the victims share the process's connection and fall silent.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import time

from bench.records import Record, layout, shares, victims
from mesh import config, logs
from mesh.bus import Bus, Handler, NatsBus, StateListener
from mesh.membership.announcer import Announcer, new_incarnation
from mesh.membership.connection_names import connection_name
from mesh.membership.coverage import CoverageWatch
from mesh.messages import Heartbeat
from mesh.node import runtime

READY = "records announcing"  # the line bench.scale waits for in this process's log
CONNECTION = "bench-scale-sim-"  # the start of each simulator's NATS connection name


class Gate:
    """The shared bus, but what goes out through it is dropped once `shut`: its announcers
    fall silent as a killed process would, while the rest of the process carries on."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.shut = False

    @property
    def connected(self) -> bool:
        return self._bus.connected

    def on_state(self, listener: StateListener) -> None:
        self._bus.on_state(listener)

    async def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> None:
        if not self.shut:
            await self._bus.publish(subject, data, headers=headers)

    async def subscribe(self, subject: str, handler: Handler) -> None:
        await self._bus.subscribe(subject, handler)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        return await self._bus.request(subject, data, timeout)

    async def flush(self, timeout: float) -> None:
        await self._bus.flush(timeout)

    async def wait_connected(self) -> None:
        await self._bus.wait_connected()

    async def close(self) -> None:
        """The connection is the process's, not this gate's: closed once, by its owner."""


def heartbeat(record: Record, interval: float, incarnation: int = 0) -> Heartbeat:
    # seq is the Announcer's to set, and so is the incarnation unless it names a connection.
    return Heartbeat(
        service=record.service,
        instance=record.instance,
        host="127.0.0.1",
        port=record.port,
        incarnation=incarnation,
        seq=0,
        interval=interval,
    )


async def own_connection(record: Heartbeat) -> NatsBus:
    """A victim's connection, named as its node's would be (presence reads the name)."""
    bus = NatsBus(config.load(), name=connection_name(record))
    await bus.start(wait=10)
    return bus


def parse_callees(text: str) -> dict[str, int]:
    """`a=9001,b=9002` -> {"a": 9001, "b": 9002}."""
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {service: int(port) for service, port in pairs}


async def simulate(args: argparse.Namespace, stop: asyncio.Event) -> int:
    records = layout(
        args.total,
        per_service=args.per_service,
        callees=parse_callees(args.callees),
        callee_instances=args.callee_instances,
    )
    doomed = {r.instance for r in victims(records, args.victims)}
    mine = [records[i] for i in shares(args.total, args.processes)[args.process]]
    settings = config.load()
    bus = NatsBus(settings, name=f"{CONNECTION}{args.process}")
    await bus.start(wait=10)
    gate = Gate(bus)
    own: list[NatsBus] = []  # the victims' connections, with --presence
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []  # kept until the process ends

    def kill() -> None:
        gate.shut = True
        closing.extend(loop.create_task(victim.close()) for victim in own)

    loop.add_signal_handler(signal.SIGUSR1, kill)
    timing = dataclasses.replace(settings.timing, interval=args.interval)
    coverage = CoverageWatch(bus, timing, count_invalid=lambda family: None)
    await coverage.start()
    announcers: list[Announcer] = []
    slow = settings.heartbeat_covered_interval

    def paced(covered: bool) -> None:
        for announcer in announcers:
            announcer.update(interval=coverage.interval(slow))

    coverage.on_change(paced)
    began = time.monotonic()
    for i, record in enumerate(mine):
        # Announcer i starts (and beats from then on) i / len(mine) of the ramp in.
        delay = began + (args.ramp or args.interval) * i / len(mine) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        hb = heartbeat(record, coverage.interval(slow), new_incarnation())
        voice: Bus = bus
        if record.instance in doomed:
            voice = gate
            if args.presence:
                own.append(await own_connection(hb))
                voice = own[-1]
        announcer = Announcer(voice, hb, incarnation=hb.incarnation)
        await announcer.start()
        announcers.append(announcer)
    silenced = sum(r.instance in doomed for r in mine)
    print(f"{len(announcers)} {READY} ({silenced} die on SIGUSR1)", flush=True)
    await stop.wait()
    await bus.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, required=True, help="records in the whole fleet")
    parser.add_argument("--process", type=int, required=True, help="this process's index")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--per-service", type=int, default=30)
    parser.add_argument("--callees", default="", help="called services: name=port,...")
    parser.add_argument("--callee-instances", type=int, default=30)
    parser.add_argument("--victims", type=int, default=100)
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat seconds")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to start all (interval)")
    parser.add_argument("--presence", action="store_true", help="victims die by connection")
    args = parser.parse_args()
    logs.setup(config.load().log_level, as_json=False)
    return runtime.run(lambda stop: simulate(args, stop))


if __name__ == "__main__":
    raise SystemExit(main())
