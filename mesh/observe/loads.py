"""The latest load report of every node, for watchers: `mesh top` and the dashboard."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mesh import subjects
from mesh.bus import Bus, Delivery
from mesh.messages import LoadReport, decode_counted


class Loads:
    """Reports by instance, folded from `mesh.v1.load.>`; the nodes that route never
    subscribe (their heartbeats carry no figures), only whoever shows them."""

    def __init__(self, count_invalid: Callable[[str], None] = lambda family: None) -> None:
        """`count_invalid`: a node's Metrics.invalid_message (a watcher outside the mesh,
        `mesh top`, has no counters to show)."""
        self._latest: dict[str, LoadReport] = {}
        self._listening = False
        self._count_invalid = count_invalid

    @property
    def latest(self) -> Mapping[str, LoadReport]:
        return self._latest

    async def listen(self, bus: Bus) -> None:
        """Subscribe (once, however often asked)."""
        if not self._listening:
            await bus.subscribe(subjects.LOADS, self._fold)  # refused: asked again next time
            self._listening = True

    def fold(self, report: LoadReport) -> None:
        self._latest[report.instance] = report

    def retain(self, present: Mapping[str, object]) -> None:
        """Forget the reports of nodes no longer in the view."""
        for instance in [i for i in self._latest if i not in present]:
            del self._latest[instance]

    async def _fold(self, delivery: Delivery) -> None:
        message = decode_counted(delivery.subject, delivery.data, self._count_invalid)
        if isinstance(message, LoadReport):
            self.fold(message)
