"""How one event reads in `mesh events tail`: what happened, to what, where."""

from __future__ import annotations

import time

from mesh.messages import Event


def line(event: Event) -> str:
    """One line: the time it was seen, the kind, then the happening in words."""
    when = time.strftime("%H:%M:%S", time.localtime(event.at))
    return f"{when}  {event.kind:<18} {_what(event)}"


def _what(event: Event) -> str:
    detail = event.detail
    if event.kind.startswith("policy."):
        policy = detail.get("policy") or detail.get("key") or event.service
        said = f"{policy} rev {detail.get('revision', '?')} on {event.instance or event.node}"
        if "after_ms" in detail:
            said += f" ({detail['after_ms']} ms after publish)"
        reason = detail.get("reason", "")
        return f"{said}: {reason}" if reason else said
    where = f"{event.service}/{event.instance}" if event.instance else event.service
    extra = " ".join(f"{k}={v}" for k, v in detail.items())
    return f"{where:<32} by {event.node} {extra}".rstrip()
