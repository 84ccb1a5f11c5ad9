"""The latest load report of every node, for watchers: `mesh top` and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping

from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.errors import InvalidMessage
from mesh.messages import LoadReport, decode


class Loads:
    """Reports by instance, folded from `mesh.v1.load.>`; the nodes that route never
    subscribe (their heartbeats carry no figures), only whoever shows them."""

    def __init__(self) -> None:
        self._latest: dict[str, LoadReport] = {}
        self._listening = False

    @property
    def latest(self) -> Mapping[str, LoadReport]:
        return self._latest

    async def listen(self, bus: Bus) -> None:
        """Subscribe (once, however often asked)."""
        if not self._listening:
            self._listening = True
            await bus.subscribe(subjects.LOADS, self._fold)

    def fold(self, report: LoadReport) -> None:
        self._latest[report.instance] = report

    def retain(self, present: Mapping[str, object]) -> None:
        """Forget the reports of nodes no longer in the view."""
        for instance in [i for i in self._latest if i not in present]:
            del self._latest[instance]

    async def _fold(self, delivery: Delivery) -> None:
        try:
            message = decode(delivery.subject, delivery.data)
        except InvalidMessage:
            return  # counted by the nodes that act on messages; watchers only show them
        if isinstance(message, LoadReport):
            self.fold(message)
