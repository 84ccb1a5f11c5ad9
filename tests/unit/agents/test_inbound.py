"""The inbound listener's decisions: the gatekeeper's routing and refusals, the policy vet."""

from __future__ import annotations

import msgspec
import pytest

from agents.inbound import Gatekeeper, unguarded
from mesh.config import Settings
from mesh.errors import AccessDenied
from mesh.forwarding.defaults import default_service
from mesh.policy.access import Access
from mesh.policy.compile import Compiled, compile_revision
from mesh.policy.model import Document

CHECKOUT = b"spiffe://natsmesh.local/ns/default/sa/checkout"


class Head:
    """A request head as routing reads it."""

    def __init__(self, target: bytes, *headers: tuple[bytes, bytes]) -> None:
        self.method = b"GET"
        self.target = target
        self.host = b"payments"
        self.headers = list(headers)
        self.client = b"127.0.0.1"


def test_everything_goes_to_the_local_service_when_admitted() -> None:
    keeper = Gatekeeper("payments", "natsmesh.local", lambda: frozenset({"checkout"}))
    routed = keeper(Head(b"/pay?x=1", (b"x-mesh-peer", CHECKOUT)), 0.0)
    assert (routed.service, routed.target, routed.route) == ("payments", b"/pay?x=1", "inbound")
    assert keeper(Head(b"http://payments/pay", (b"x-mesh-peer", CHECKOUT)), 0.0).target == b"/pay"
    assert keeper.denied == {}


@pytest.mark.parametrize(
    ("peer", "counted"),
    [
        (b"spiffe://natsmesh.local/ns/default/sa/frontend", "frontend"),
        (b"spiffe://other.domain/ns/default/sa/checkout", ""),  # another trust domain: nobody
        (None, ""),  # plain text: no identity
    ],
)
def test_callers_the_rules_do_not_admit_are_denied_and_counted(
    peer: bytes | None, counted: str
) -> None:
    keeper = Gatekeeper("payments", "natsmesh.local", lambda: frozenset({"checkout"}))
    head = Head(b"/pay", *([(b"x-mesh-peer", peer)] if peer else []))
    for _ in range(3):
        with pytest.raises(AccessDenied, match="may not call 'payments'") as denied:
            keeper(head, 0.0)
    assert denied.value.service == "payments"
    assert "checkout" not in str(denied.value)  # the rules stay with the callee
    assert keeper.denied == {counted: 3}


def _compiled(access: Access | None) -> Compiled:
    service = default_service(Settings())
    payments = msgspec.structs.replace(service, name="payments", access=access)
    documents: dict[str, Document] = {"service.payments": payments}
    return compile_revision(documents, default=service, zone="")


def test_an_agent_without_inbound_listener_refuses_access_rules_for_its_own_service() -> None:
    vet = unguarded("payments")
    vet(_compiled(None))
    unguarded("orders")(_compiled(Access(allow_from=("checkout",))))
    with pytest.raises(ValueError, match="needs its agents' inbound listener"):
        vet(_compiled(Access(allow_from=("checkout",))))
