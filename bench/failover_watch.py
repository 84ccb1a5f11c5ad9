"""bench.failover's watchers: whether a node has an instance out, polled from a process per node."""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import queue
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from bench.console import BenchError
from bench.loopback import admin_get

# Spawned, not forked: the bench's process runs threads (the load, the event tap).
_SPAWN = multiprocessing.get_context("spawn")
_POLL = 0.002  # seconds between two looks at one node
_START = 10.0  # seconds a watcher may take to start (a fresh interpreter, the imports)


@dataclass(frozen=True)
class Node:
    label: str
    admin: int


def out_of_view(node: Node, instance: str) -> bool:
    """True once `node` would not route to `instance` (unroutable or ejected); for a
    gateway with the HAProxy data plane, once HAProxy itself has it out of service."""
    _, body = admin_get(node.admin, "/mesh/upstreams", timeout=1)
    haproxy = json.loads(body).get("hello", {}).get("haproxy")
    if haproxy is not None:
        return bool(haproxy.get(instance, "gone") != "ready")
    status, body = admin_get(node.admin, "/mesh/members", timeout=1)
    if status != 200:  # not serving yet (a starting agent): nothing to tell, ask again
        raise ValueError(f"{node.label}'s admin port answered {status}")
    member = next((m for m in json.loads(body)["members"] if m["instance"] == instance), None)
    if member is None or not member["routable"]:
        return True
    _, body = admin_get(node.admin, "/mesh/upstreams", timeout=1)
    hello = json.loads(body).get("hello", {"instances": []})
    return any(i["instance"] == instance and i["ejected"] for i in hello["instances"])


class Watchers:
    """One process per node, started before the fault and polling from `go` on.

    A poll loop in the bench's own process shares its interpreter with the load threads:
    a sighting waited for them, and one node slow to answer delayed the other. Against
    the gateway's own log of its HAProxy commands, that loop saw the instance out up to
    30 ms late. Each watcher records time.monotonic(), one clock for every process.
    """

    def __init__(self, nodes: list[Node], instance: str) -> None:
        self._go: Event = _SPAWN.Event()
        self._seen: Queue[tuple[str, float]] = _SPAWN.Queue()
        self._processes = [
            _SPAWN.Process(target=_watch, args=(node, instance, self._go, self._seen))
            for node in nodes
        ]
        for process in self._processes:
            process.start()
        ready = 0
        with contextlib.suppress(queue.Empty):  # one did not start in time
            while ready < len(nodes):
                label, _ = self._seen.get(timeout=_START)
                ready += label == ""
        if ready < len(nodes):
            self.stop()
            raise BenchError(f"{len(nodes) - ready} watcher(s) did not start in {_START:g} s")

    def go(self) -> None:
        self._go.set()

    def sightings(self, since: float, within: float) -> dict[str, float]:
        """Seconds from `since` to each node's first look with the instance out; a node
        still having it after `within` seconds is missing."""
        seen: dict[str, float] = {}
        deadline = since + within
        with contextlib.suppress(queue.Empty):  # the rest never saw it out
            while len(seen) < len(self._processes):
                label, at = self._seen.get(timeout=max(deadline - time.monotonic(), 0.01) + 1)
                seen[label] = at - since
        self.stop()
        return seen

    def stop(self) -> None:
        for process in self._processes:
            process.kill()
            process.join()


def _watch(node: Node, instance: str, go: Event, seen: Queue[tuple[str, float]]) -> None:
    seen.put(("", 0.0))  # started: the imports are done
    go.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            if out_of_view(node, instance):
                seen.put((node.label, time.monotonic()))
                return
        time.sleep(_POLL)
