"""Policy documents: the `Document` union of Route and Service, tagged by `kind`, and KV keys."""

from __future__ import annotations

from mesh.policy.route import Route
from mesh.policy.service import Service

Document = Route | Service
KINDS = ("Route", "Service")

__all__ = ["KINDS", "Document", "Route", "Service", "key", "kind"]


def kind(document: Document) -> str:
    return "Route" if isinstance(document, Route) else "Service"


def key(document: Document) -> str:
    """The document's key in the policy bucket: `route.hello`, `service.hello-service`."""
    return f"{kind(document).lower()}.{document.name}"
