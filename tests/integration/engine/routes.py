"""A Directory for engine tests: services routed to instances on 127.0.0.1 ports."""

from __future__ import annotations

from collections.abc import Mapping

from mesh.config import Settings
from mesh.forwarding.defaults import default_service
from mesh.forwarding.directory import Directory
from mesh.membership import view as membership
from mesh.messages import Heartbeat
from mesh.policy.compile import compile_revision
from mesh.timing import PRESETS


def directory(
    services: Mapping[str, list[int]],
    failing: Mapping[str, list[int]] | None = None,
    settings: Settings | None = None,
) -> Directory:
    """One agent per (service, port); those in `failing` fail their health check."""
    view = membership.View(timing=PRESETS["lan"])
    for health, table in (("passing", services), ("failing", failing or {})):
        for service, ports in table.items():
            for index, port in enumerate(ports):
                record = Heartbeat(
                    service=service,
                    instance=f"{service}-{health}-{index}",
                    host="127.0.0.1",
                    port=port,
                    incarnation=1,
                    seq=1,
                    health=health,  # type: ignore[arg-type]
                )
                view, _ = membership.apply(view, record, 0.0)
    default = default_service(settings or Settings())
    result = Directory(compiled=compile_revision({}, default=default, zone=""))
    result.update(view)
    return result
