"""The forwarding path's read side of the view: routable endpoints and balancer state."""

from __future__ import annotations

from mesh.balance import round_robin
from mesh.balance.endpoint import Endpoint, by_service
from mesh.errors import NoHealthyUpstream, NoRoute
from mesh.view import View


class Directory:
    """Rebuilt whenever the view's routing changes; read on every request."""

    def __init__(self) -> None:
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._known: frozenset[str] = frozenset()
        self._cursors: dict[str, int] = {}
        self.version = -1

    def update(self, view: View) -> set[tuple[str, int]]:
        """Adopt `view`; returns the addresses that stopped being routable (to close pools)."""
        before = {e.address for eps in self._endpoints.values() for e in eps}
        self._endpoints = by_service(view)
        self._known = frozenset(
            m.record.service for m in view.members.values() if m.record.role == "agent"
        )
        self.version = view.version
        after = {e.address for eps in self._endpoints.values() for e in eps}
        return before - after

    def knows(self, service: str) -> bool:
        return service in self._known

    def endpoints(self, service: str) -> tuple[Endpoint, ...]:
        return self._endpoints.get(service, ())

    def pick(self, service: str) -> Endpoint:
        endpoints = self._endpoints.get(service)
        if not endpoints:
            if service in self._known:
                raise NoHealthyUpstream(f"no healthy instance of {service!r}", service=service)
            raise NoRoute(f"no service named {service!r}", service=service)
        endpoint, self._cursors[service] = round_robin.pick(
            endpoints, self._cursors.get(service, 0)
        )
        return endpoint
