"""Ejection events named after the instance's state, so that every ejecting node agrees."""

from __future__ import annotations

from mesh.membership.view import View
from mesh.messages import Event, EventKind, Evidence
from mesh.resilience.outlier import Ejected, Restored

_IN_FLIGHT = 2  # heartbeats an observer's view of an instance may be ahead or behind


class EjectionEvents:
    """Turns one node's ejections into events whose ids name the ejection, not the node.

    An ejection is named after the instance's incarnation and the heartbeat seq that the
    evidence's observer had heard (or this node, when it saw the failure itself): a dead
    instance sends no more heartbeats, and nodes ejecting on one observer's evidence take
    its seq, so every node ejecting for one failure derives one id. Its restoration takes
    the same name: the first node to let the instance back stores it, the others' copies
    are duplicates of that one happening.
    """

    def __init__(self) -> None:
        # (service, instance) -> the name of its ongoing ejection; only ejected instances.
        self._ongoing: dict[tuple[str, str], str] = {}

    def event(
        self, service: str, effect: Ejected | Restored, evidence: Evidence | None, view: View
    ) -> Event:
        key = (service, effect.instance)
        if isinstance(effect, Ejected):
            kind: EventKind = "instance.ejected"
            name = self._ongoing[key] = self._name(effect.instance, evidence, view)
            detail = {"reason": effect.reason}
        else:
            kind = "instance.restored"
            name = self._ongoing.pop(key, "") or self._name(effect.instance, None, view)
            detail = {}
        return Event(
            id=f"{kind}:{service}:{effect.instance}:{name}",
            kind=kind,
            service=service,
            instance=effect.instance,
            detail=detail,
        )

    def retain(self, view: View) -> None:
        """Forget the ejections of instances the view no longer holds (never restored)."""
        for key in [key for key in self._ongoing if key[1] not in view.members]:
            del self._ongoing[key]

    @staticmethod
    def _name(instance: str, evidence: Evidence | None, view: View) -> str:
        member = view.members.get(instance)
        if member is None:
            return "0:0"  # ejections only happen to members: a restoration after forgetting
        seq = member.seq
        # An honest observer heard what we heard, give or take a heartbeat in flight; a
        # seq further off could only name this ejection after another one, hiding it.
        if evidence is not None and abs(evidence.seq - seq) <= _IN_FLIGHT:
            seq = evidence.seq
        return f"{member.record.incarnation}:{seq}"
