"""The HAProxy data plane's shell: the gateway's directory and policies, carried to HAProxy."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable

from mesh import clock as system_clock
from mesh.balance.endpoint import Endpoint
from mesh.clock import Clock
from mesh.errors import HaproxyError, RuntimeApiError
from mesh.forwarding.directory import Directory
from mesh.forwarding.policy_feed import PolicyRejected
from mesh.forwarding.service_state import ServiceState
from mesh.haproxy.answer_order import AnswerOrder
from mesh.haproxy.layout import Backend, Server, service_of
from mesh.haproxy.log_lines import NO_SERVER, Request, ServerDown
from mesh.haproxy.log_sink import LogSink
from mesh.haproxy.probe import serving
from mesh.haproxy.process import HaproxyProcess
from mesh.haproxy.render import PlaneConfig, backends, render
from mesh.haproxy.runtime_api import failure
from mesh.haproxy.servers import changes, desired
from mesh.haproxy.show_answers import servers_state
from mesh.haproxy.support import unsupported
from mesh.messages import Event
from mesh.metrics import Metrics
from mesh.policy.compile import Compiled
from mesh.resilience import outcome

log = logging.getLogger(__name__)

# How long a reloaded HAProxy gets to answer the new revision on its probe port, which
# is what the policy's acknowledgement waits for.
LIVE_WITHIN = 5.0
# What a gap in a server's answer numbers stands for: answers below 500 the sampled log
# left out, at least one, which end any streak of failures.
_UNSEEN = outcome.response(200)
# Between rounds that retry what HAProxy refused (a server still holding connections
# cannot be deleted yet) and check HAProxy's servers against what was sent.
ROUND = 1.0


class HaproxyPlane:
    """Serves the gateway's traffic through HAProxy; implements mesh.node.forwarding.DataPlane.

    Members and ejections reach HAProxy through its runtime API within a loop turn of
    the directory changing; a new revision (or a service the default routes newly
    reach) through a reload, which `go_live` waits for until a request proves it serves.
    What HAProxy sees comes back through its log: requests become the mesh's metrics and
    the outlier detectors' outcomes, and a server it took out becomes evidence.
    """

    def __init__(
        self,
        directory: Directory,
        metrics: Metrics,
        config: Callable[[Compiled, str], PlaneConfig],
        binary: str,
        *,
        on_restart: Callable[[str, int], None],
        clock: Clock = system_clock,
    ) -> None:
        self._directory = directory
        self._sample = 1  # PlaneConfig.log_sample of the configuration rendered last
        self._metrics = metrics
        self._config = config  # the compiled revision and its tag -> what render needs
        self._process = process = HaproxyProcess(
            binary, config=self._restarting, on_crash=self._crashed
        )
        self._clock = clock
        self._on_restart = on_restart
        self._api = process.stats
        self.log_socket = str(process.workdir / "log.sock")  # HAProxy's private folder
        self._sink = LogSink(self.log_socket, self._heard)
        self._order = AnswerOrder()  # of each server's answers, when the log is sampled
        self._lock = asyncio.Lock()  # one reload or batch of commands at a time
        self._compiled = directory.compiled
        self._revision = ""
        self._backends: tuple[Backend, ...] = ()
        self._servers: dict[str, dict[str, Server]] = {}  # as HAProxy has them
        self._pending = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._rounds: asyncio.Task[None] | None = None
        self.commands_failed = 0
        metrics.counter(
            "mesh_dataplane_restarts",
            "Times the gateway started its HAProxy again after it ended unasked.",
            (),
            lambda: [((), float(process.restarts))],
        )
        metrics.counter(
            "mesh_dataplane_commands_failed",
            "Runtime commands HAProxy refused (asked again on the next round).",
            (),
            lambda: [((), float(self.commands_failed))],
        )
        metrics.counter(
            "mesh_dataplane_log_lines_unparsed",
            "Lines from HAProxy's log that were neither a request nor a server going down.",
            (),
            lambda: [((), float(self._sink.unparsed))],
        )

    # --- start and stop ---

    async def start(self) -> None:
        """HAProxy serving the current directory; raises (one line) when it cannot start."""
        await self._sink.open()
        revision = self._new_revision()
        await self._process.start(self._rendered(self._compiled, revision))
        if not await serving(self._config(self._compiled, revision).probe, revision, LIVE_WITHIN):
            raise HaproxyError(f"haproxy did not answer its probe within {LIVE_WITHIN:g} s")
        self._started = True
        self._rounds = asyncio.get_running_loop().create_task(self._every_round(), name="haproxy")

    async def stop(self) -> None:
        if self._rounds is not None:
            self._rounds.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rounds
        for task in list(self._tasks):
            task.cancel()
        await self._process.stop()
        self._sink.close()

    # --- from the gateway (mesh.node.forwarding.DataPlane) ---

    def changed(self) -> None:
        """The directory changed: one sync at the end of this loop turn, however many calls."""
        if self._started and not self._pending:  # before, `start` renders them all
            self._pending = True
            asyncio.get_running_loop().call_soon(self._spawn_sync)

    async def go_live(self, compiled: Compiled) -> None:
        reasons = unsupported(compiled)
        if reasons:
            raise PolicyRejected("; ".join(reasons))
        if not self._started:
            # Before the gateway serves: HAProxy starts with it, proven live by `start`.
            self._compiled = compiled
            return
        async with self._lock:
            revision = self._new_revision()
            text = self._rendered(compiled, revision)
            try:
                await self._process.reload(text)
            except Exception as exc:  # the old configuration still serves
                raise PolicyRejected(f"haproxy did not load it: {exc}") from exc
            self._compiled = compiled
            if not await serving(self._config(compiled, revision).probe, revision, LIVE_WITHIN):
                raise PolicyRejected(f"haproxy did not serve it within {LIVE_WITHIN:g} s")

    def describe(self, upstreams: dict[str, object]) -> dict[str, object]:
        """`/mesh/upstreams` with, per service, its servers as HAProxy confirmed them
        (`ready`, `drain`, `maint`): an instance missing there gets no request."""
        for service, entry in upstreams.items():
            servers = self._servers.get(service, {})
            if isinstance(entry, dict):
                entry["haproxy"] = {name: server.state for name, server in servers.items()}
        return upstreams

    # --- keeping HAProxy's servers in line ---

    def _rendered(self, compiled: Compiled, revision: str) -> str:
        """The whole configuration, every current server in it (a reload loses the others)."""
        self._revision = revision
        plane = self._config(compiled, revision)
        self._sample = plane.log_sample
        self._backends = backends(compiled, plane)
        wanted = desired(self._directory, self._backends)
        self._servers = wanted
        return render(compiled, plane, {name: tuple(s.values()) for name, s in wanted.items()})

    def _restarting(self) -> str:
        """The configuration a crashed HAProxy starts again with: every current server."""
        return self._rendered(self._compiled, self._new_revision())

    def _new_revision(self) -> str:
        return secrets.token_hex(6)

    def _spawn_sync(self) -> None:
        self._pending = False
        task = asyncio.get_running_loop().create_task(self._sync())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync(self) -> None:
        async with self._lock:
            plane = self._config(self._compiled, self._revision)
            if backends(self._compiled, plane) != self._backends:
                # A service the default routes newly reach, or one gone: only a reload
                # makes or removes a backend.
                await self._reload_for_backends()
                return
            wanted = desired(self._directory, self._backends)
            todo = changes(self._servers, wanted)
            if not todo:
                return
            applied = {name: dict(servers) for name, servers in self._servers.items()}
            try:
                answers = await self._api.run([c for change in todo for c in change.commands])
            except RuntimeApiError as exc:
                log.warning("haproxy runtime API: %s", exc)
                self.commands_failed += 1
                return
            index = 0
            for change in todo:
                mine = answers[index : index + len(change.commands)]
                index += len(change.commands)
                failed = [
                    (command, reason)
                    for command, answer in zip(change.commands, mine, strict=True)
                    if (reason := failure(command, answer)) is not None
                ]
                if failed:
                    self.commands_failed += len(failed)
                    log.debug("haproxy refused %r: %s", *failed[0])
                    continue  # the next round reads HAProxy's own state and asks again
                servers = applied.setdefault(change.backend, {})
                if change.after is None:
                    servers.pop(change.server, None)
                else:
                    servers[change.server] = change.after
            self._servers = applied

    async def _reload_for_backends(self) -> None:
        revision = self._new_revision()
        try:
            await self._process.reload(self._rendered(self._compiled, revision))
        except Exception as exc:
            log.warning("haproxy reload for new backends failed: %s", exc)

    async def _every_round(self) -> None:
        """Ask again what HAProxy refused, from what it says it has."""
        while True:
            await asyncio.sleep(ROUND)
            with contextlib.suppress(RuntimeApiError):
                await self._reread()
            self.changed()

    async def _reread(self) -> None:
        """What HAProxy has, as Servers: one it took down itself (`observe`) counts as in
        `maint`, so that the next sync brings it back if the mesh wants it."""
        async with self._lock:
            rows = servers_state((await self._api.run(["show servers state"]))[0])
            self._order.retain(
                {(b.service, name) for b in self._backends for name in rows.get(b.name, {})}
            )
            self._servers = {
                backend.name: {
                    name: Server(
                        name,
                        row.address,
                        row.port,
                        row.weight,
                        row.state if row.op_state == "running" else "maint",
                    )
                    for name, row in rows.get(backend.name, {}).items()
                }
                for backend in self._backends
            }

    def _crashed(self, how: str) -> None:
        log.error("haproxy %s: starting it again", how)
        self._on_restart(how, self._process.restarts)

    # --- what HAProxy saw ---

    def _heard(self, line: Request | ServerDown) -> None:
        now = self._clock.monotonic()
        directory = self._directory
        if isinstance(line, ServerDown):
            taken = self._servers.get(line.backend, {}).get(line.server)
            if taken is not None:  # down by HAProxy's hand: the next sync says `health up`
                self._servers[line.backend][line.server] = dataclasses.replace(taken, state="maint")
            state, endpoint = self._instance(service_of(line.backend), line.server)
            if state is not None and endpoint is not None:
                directory.observe(state, endpoint, outcome.REFUSED, now)
            self.changed()  # the mesh, not HAProxy's check, decides whether it stays out
            return
        service = line.service
        seconds = max(line.total, 0.0)
        # An instance's answer below 500 was logged one time in log_sample (render.py).
        sampled = line.server != NO_SERVER and 100 <= line.status < 500
        count = self._sample if sampled else 1
        self._metrics.request_done(service, line.route, line.status, line.flags, seconds, count)
        result = line.outcome()
        if result is None:
            return
        state, endpoint = self._instance(service, line.server)
        if state is None or endpoint is None:
            return  # it left meanwhile
        failed = result.kind is not outcome.Kind.RESPONSE or result.status >= 500
        counters = directory.counters.of(service, line.server)
        counters.seen_ended(result, seconds, failed=failed, count=count)
        # Sampled, a failure continues its server's streak only if no answer went unseen
        # since that server's last failure (each is logged; a logged success ends it).
        if failed and self._sample > 1 and not self._order.follows(service, line):
            directory.observe(state, endpoint, _UNSEEN, now)
        directory.observe(state, endpoint, result, now)

    def _instance(self, service: str, instance: str) -> tuple[ServiceState | None, Endpoint | None]:
        """The directory's state of `service` and its endpoint `instance`, as far as known."""
        state = self._directory.state(service)
        return state, state.endpoint(instance) if state is not None else None


def restart_event(node: str, gateway: str, how: str, restarts: int) -> Event:
    """A gateway started its HAProxy again (docs/events.md)."""
    return Event(
        id=f"dataplane.restarted:{node}:{restarts}",
        kind="dataplane.restarted",
        service=gateway,
        instance=node,
        detail={"how": how[:128], "restarts": str(restarts)},
    )
