"""What one routing observer receives from N simulated instances at 1 Hz, on a real nats-server.

`before`: every instance sends its full record each second, load figures inside (the wire
before short beats); `after`: a short beat, the full record every MESH_HEARTBEAT_FULL_EVERY
beats, load figures on their own subject (which a routing observer does not hear). The
observer subscribes as every gateway and agent does (heartbeats and leaves), folds what it
gets into a view, and counts messages, bytes and its CPU time.

    .venv/bin/python -m bench.observer_traffic --instances 1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import msgspec
import nats
from nats.aio.msg import Msg

from bench.results import environment, write_results
from mesh import config, subjects
from mesh.membership import view as membership
from mesh.messages import (
    Beat,
    Heartbeat,
    InstanceTraffic,
    Load,
    LoadReport,
    ServiceTraffic,
    decode,
    encode,
)
from mesh.playground.natsserver import NatsServer, find_binary
from mesh.timing import PRESETS

# A NATS MSG frame around each payload: "MSG <subject> <sid> <size>\r\n" ... "\r\n".
FRAME = len("MSG  1 00000\r\n\r\n")
BUSY_SHARE = 10  # one instance in this many forwards traffic (and reports figures)


def record(index: int) -> Heartbeat:
    service = f"svc-{index % 100:03}"
    return Heartbeat(
        service=service,
        instance=f"{service}-{index:05}",
        host=f"10.0.{index // 250}.{index % 250}",
        port=8080,
        zone="eu-west-1a",
        version="1.4.2",
        meta={"team": "checkout"},
        incarnation=1_764_491_000_000 + index,
        seq=0,
        admin_port=15000,
        inbound_port=15006,
    )


def figures(index: int) -> Load:
    """A caller of 3 services of 10 instances each (issue 13's figures), or none yet."""
    if index % BUSY_SHARE:
        return Load(window=1.0)
    services = {
        f"svc-{(index + s) % 100:03}": ServiceTraffic(
            requests=1200,
            errors=3,
            inflight=4,
            latency=[100, 900, 180, 20],
            instances={
                f"svc-{(index + s) % 100:03}-{i:05}": InstanceTraffic(
                    requests=120, latency=[10, 90, 18, 2]
                )
                for i in range(10)
            },
        )
        for s in range(3)
    }
    return Load(window=1.0, services=services)


def before_payload(hb: Heartbeat, load: Load) -> bytes:
    """The full record with its load figures inside, as heartbeats were sent before."""
    return msgspec.json.encode(msgspec.to_builtins(hb) | {"load": msgspec.to_builtins(load)})


def messages(index: int, seq: int, mode: str, full_every: int) -> list[tuple[str, bytes]]:
    hb = msgspec.structs.replace(record(index), seq=seq)
    subject = subjects.heartbeat(hb.service, hb.instance)
    if mode == "before":
        return [(subject, before_payload(hb, figures(index)))]
    full = seq % full_every == 1 or full_every == 1
    beat = Beat(service=hb.service, instance=hb.instance, incarnation=hb.incarnation, seq=seq)
    out = [(subject, encode(hb if full else beat))]
    load = figures(index)
    if load.services:
        report = LoadReport(
            service=hb.service, instance=hb.instance, incarnation=hb.incarnation, load=load
        )
        out.append((subjects.load(hb.service, hb.instance), encode(report)))
    return out


async def run(
    url: str, mode: str, instances: int, seconds: float, full_every: int
) -> dict[str, object]:
    sender, observer = await nats.connect(url), await nats.connect(url)
    counts = {"msgs": 0, "payload": 0, "wire": 0, "cpu": 0.0}
    view = membership.View(PRESETS["lan"])
    counting = False

    async def heard(msg: Msg) -> None:
        nonlocal view
        if not counting:
            return
        started = time.process_time()
        view, _ = membership.apply(view, decode(msg.subject, msg.data), time.monotonic())
        counts["cpu"] += time.process_time() - started
        counts["msgs"] += 1
        counts["payload"] += len(msg.data)
        counts["wire"] += len(msg.data) + len(msg.subject) + FRAME

    await observer.subscribe(subjects.HEARTBEATS, cb=heard)
    await observer.subscribe(subjects.LEAVES, cb=heard)
    await observer.flush()
    # Everyone's first record, so that beats find their members (as a sync would give).
    for index in range(instances):
        await sender.publish(*messages(index, 1, "before" if mode == "before" else "after", 1)[0])
    await sender.flush()
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    counting = True
    for tick in range(int(seconds * instances)):
        second, index = divmod(tick, instances)
        await asyncio.sleep(max(0.0, start + tick / instances - loop.time()))
        for subject, payload in messages(index, second + 2, mode, full_every):
            await sender.publish(subject, payload)
    await sender.flush()
    await asyncio.sleep(0.3)
    counting = False
    elapsed = loop.time() - start
    await sender.close()
    await observer.close()
    # Per simulated second (every message sent is counted, however late a loaded machine
    # sent it): what the observer gets from the fleet at 1 Hz.
    return {
        "mode": mode,
        "instances": instances,
        "seconds": seconds,
        "sending_took": round(elapsed, 2),
        "msgs_per_s": round(counts["msgs"] / seconds),
        "payload_bytes_per_s": round(counts["payload"] / seconds),
        "wire_bytes_per_s": round(counts["wire"] / seconds),
        # This branch's view in both modes (the wire differs): folding beats vs records.
        "view_cpu_per_s": round(counts["cpu"] / seconds, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--full-every", type=int, default=10)
    args = parser.parse_args()
    binary = find_binary(config.load().nats_server_bin)
    with tempfile.TemporaryDirectory(prefix="observer-traffic-") as folder:
        server = NatsServer(binary, store_dir=Path(folder))
        server.start()
        try:
            results = [
                asyncio.run(run(server.url, mode, args.instances, args.seconds, args.full_every))
                for mode in ("before", "after")
            ]
        finally:
            server.stop()
    for result in results:
        print(json.dumps(result))
    path = write_results(
        "observer-traffic", {"environment": environment({}), "args": vars(args), "runs": results}
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
