"""Each backend's servers as the directory wants them, and the runtime commands that get there."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mesh.forwarding.directory import Directory
from mesh.haproxy.backends_cfg import SERVER_DEFAULTS
from mesh.haproxy.layout import Backend, Server, ServerState, scaled_weights
from mesh.haproxy.words import address

Servers = Mapping[str, Mapping[str, Server]]  # backend name -> server name -> server


def desired(directory: Directory, backends: Iterable[Backend]) -> dict[str, dict[str, Server]]:
    """Every backend's servers: the service's alive instances that carry its subset,
    `ready` when the balancers would pick them (healthy, not ejected; the panic threshold
    and zone applied), in `maint` otherwise."""
    out: dict[str, dict[str, Server]] = {}
    for backend in backends:
        servers: dict[str, Server] = {}
        state = directory.state(backend.service)
        if state is not None:
            members = [e for e in state.everyone if e.fits(backend.subset)]
            chosen = {e.instance for e in state.candidates(backend.subset)}
            weights = scaled_weights({e.instance: e.weight for e in members})
            for e in members:
                host, port = e.address
                state_of: ServerState = "ready" if e.instance in chosen else "maint"
                servers[e.instance] = Server(e.instance, host, port, weights[e.instance], state_of)
        out[backend.name] = servers
    return out


@dataclass(frozen=True, slots=True)
class Change:
    """The commands that make one server of `backend` what `after` says (None: gone)."""

    backend: str
    server: str
    commands: tuple[str, ...]
    after: Server | None


def changes(applied: Servers, wanted: Servers) -> list[Change]:
    """What to send HAProxy's runtime API so that `applied` becomes `wanted`.

    Only backends in `wanted` are looked at (the configuration defines the backends; a
    reload changes them). A server leaves by `maint` and `del`, which HAProxy refuses
    while it still has connections: the server then stays in `maint`, and the next call
    asks again.
    """
    out: list[Change] = []
    for backend, servers in wanted.items():
        have = applied.get(backend, {})
        for name, server in servers.items():
            before = have.get(name)
            if before is None:
                out.append(Change(backend, name, _add(backend, server), server))
            elif (before.host, before.port) != (server.host, server.port):
                # A new incarnation at another address: out first, in on a later call.
                out.append(Change(backend, name, _remove(backend, name), None))
            elif before != server:
                out.append(Change(backend, name, _update(backend, before, server), server))
        for name in have.keys() - servers.keys():
            out.append(Change(backend, name, _remove(backend, name), None))
    return out


def _add(backend: str, server: Server) -> tuple[str, ...]:
    """A server added at runtime takes no `default-server` line: it gets the same options
    as the configuration's servers here (HAProxy's own take-out on a refused connection)."""
    where, at = f"{backend}/{server.name}", address(server.host, server.port)
    commands = [
        f"add server {where} {at} weight {server.weight} {SERVER_DEFAULTS}",
        f"enable health {where}",
    ]
    if server.state != "maint":  # a server added at runtime starts in maintenance
        commands.append(f"set server {where} state {server.state}")
    return tuple(commands)


def _update(backend: str, before: Server, after: Server) -> tuple[str, ...]:
    where = f"{backend}/{after.name}"
    commands: list[str] = []
    if before.weight != after.weight:
        commands.append(f"set server {where} weight {after.weight}")
    if before.state != after.state:
        if after.state == "ready":  # HAProxy may have marked it down itself: the mesh decides
            commands.append(f"set server {where} health up")
        commands.append(f"set server {where} state {after.state}")
    return tuple(commands)


def _remove(backend: str, name: str) -> tuple[str, ...]:
    return (f"set server {backend}/{name} state maint", f"del server {backend}/{name}")
