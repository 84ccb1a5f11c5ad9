"""A bounded open-loop load generator for chaos tests: fixed rate, fixed duration, tallies.

Run as a script (`python tests/load.py --url ...`, inside a test host's namespace: see
tests/hosts.py) it prints its tally as one JSON line when done or sent SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import heapq
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

SLOWEST_KEPT = 5


@dataclass
class Tally:
    """What a load run saw; `failures` lists every non-2xx or transport error."""

    sent: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    by_instance: collections.Counter[str] = field(default_factory=collections.Counter)
    by_url: collections.Counter[str] = field(default_factory=collections.Counter)  # answered
    refused: int = 0  # connects to one URL that failed, the request sent to the next instead
    # The slowest requests, slowest first: (seconds, sent at, instance or "").
    slowest: list[tuple[float, float, str]] = field(default_factory=list)

    def took(self, seconds: float, sent: float, instance: str) -> None:
        self.slowest = heapq.nlargest(SLOWEST_KEPT, [*self.slowest, (seconds, sent, instance)])

    timeline: list[tuple[float, str, int]] = field(default_factory=list)  # (t, instance, status)

    def share(self, instance: str, since: float = 0.0) -> float:
        """Fraction of answered requests served by `instance` at or after `since` seconds."""
        picked = [i for t, i, _ in self.timeline if t >= since and i]
        return picked.count(instance) / len(picked) if picked else 0.0


class Load:
    """Runs in a thread of its own so the test body can kill processes meanwhile."""

    def __init__(
        self,
        url: str,
        *,
        rate: float = 200.0,
        duration: float = 20.0,
        method: str = "GET",
        methods: tuple[str, ...] | None = None,
        headers: dict[str, str] | None = None,
        proxy: str | None = None,
        timeout: float = 10.0,
        concurrency: int = 64,
        others: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        # A client-side list (as DNS would give): requests go round robin, and one whose
        # connection cannot be made (nothing was sent) goes to the next URL.
        self.urls = (url, *others)
        self.rate = rate
        self.duration = duration
        self.methods = methods or (method,)
        self.headers = headers or {}
        self.proxy = proxy
        self.timeout = timeout
        self.concurrency = concurrency
        self.tally = Tally()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._stop = threading.Event()
        self.started = 0.0

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.join()

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Send nothing more (what is in flight finishes): for runs that end on an event."""
        self._stop.set()

    def join(self) -> Tally:
        self._thread.join(self.duration + self.timeout + 30)
        assert not self._thread.is_alive(), "load generator did not finish"
        return self.tally

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        gate = asyncio.Semaphore(self.concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.monotonic()
            total = int(self.rate * self.duration)
            tasks = []
            for n in range(total):  # bounded in count and, by the schedule, in time
                if self._stop.is_set():
                    break
                due = start + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                method = self.methods[n % len(self.methods)]
                await gate.acquire()
                task = self._one(session, method, start, gate, n % len(self.urls))
                tasks.append(asyncio.create_task(task))
            await asyncio.gather(*tasks)

    async def _one(
        self,
        session: aiohttp.ClientSession,
        method: str,
        start: float,
        gate: asyncio.Semaphore,
        first: int,
    ) -> None:
        tally = self.tally
        tally.sent += 1
        sent = time.monotonic() - start
        body = b'{"n": 1}' if method in ("POST", "PUT", "PATCH") else None
        try:
            for tried in range(len(self.urls)):
                url = self.urls[(first + tried) % len(self.urls)]
                try:
                    async with session.request(
                        method, url, data=body, headers=self.headers, proxy=self.proxy
                    ) as response:
                        data = await response.read()
                        status = response.status
                    break
                except aiohttp.ClientConnectorError:
                    if tried == len(self.urls) - 1:
                        raise
                    tally.refused += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            # When it was sent and how long it took say which event it ran into.
            took = time.monotonic() - start - sent
            tally.took(took, sent, "")
            tally.failures.append(
                f"{method} {type(exc).__name__} (sent at {sent:.2f} s, after {took:.2f} s): {exc}"
            )
            tally.timeline.append((time.monotonic() - start, "", 0))
            return
        finally:
            gate.release()
        instance = ""
        with contextlib.suppress(ValueError):
            instance = json.loads(data).get("instance", "")
        tally.took(time.monotonic() - start - sent, sent, instance)
        tally.timeline.append((time.monotonic() - start, instance, status))
        if 200 <= status < 300:
            tally.ok += 1
            tally.by_instance[instance] += 1
            tally.by_url[url] += 1
        else:
            tally.failures.append(f"{method} {status} {data[:200]!r}")


def at(seconds: float, action: Callable[[], None], load: Load) -> None:
    """Run `action` once `load` has run for `seconds`."""
    delay = seconds - load.elapsed()
    if delay > 0:
        time.sleep(delay)
    action()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", required=True, help="target (repeatable)")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--proxy")
    args = parser.parse_args()
    load = Load(args.url[0], others=tuple(args.url[1:]), rate=args.rate, duration=args.duration,
                proxy=args.proxy)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: load.stop())
    load.start()
    print(json.dumps({"started": load.started}), flush=True)  # the caller may go on
    tally = load.join()
    report = {
        "started": load.started,  # CLOCK_MONOTONIC: the same clock in every namespace
        "sent": tally.sent,
        "ok": tally.ok,
        "refused": tally.refused,
        "slowest": tally.slowest,
        "failures": tally.failures,
        "by_instance": tally.by_instance,
        "by_url": tally.by_url,
        "timeline": tally.timeline,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
