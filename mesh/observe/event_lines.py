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
        if detail.get("after_ms", "").isdigit():
            said += f" ({_after(int(detail['after_ms']))} after publish)"
        reason = detail.get("reason", "")
        return f"{said}: {reason}" if reason else said
    where = f"{event.service}/{event.instance}" if event.instance else event.service
    extra = " ".join(f"{k}={v}" for k, v in detail.items())
    return f"{where:<32} by {event.node} {extra}".rstrip()


def _after(ms: int) -> str:
    """Milliseconds as people read them: a node that applied a revision as it started,
    hours after it was published, says so in hours."""
    if ms < 10_000:
        return f"{ms} ms"
    seconds = ms // 1000
    if seconds < 600:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
