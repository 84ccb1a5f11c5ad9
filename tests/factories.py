"""Small builders shared by the unit tests: wire messages, views, a node's Service defaults."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mesh.config import Settings
from mesh.forwarding.defaults import default_service
from mesh.membership import view as v
from mesh.messages import (
    Beat,
    Event,
    Evidence,
    Heartbeat,
    InstanceTraffic,
    Leave,
    Load,
    LoadReport,
    RequestRecord,
    ServiceTraffic,
    Sync,
)
from mesh.policy.service import Service
from mesh.timing import PRESETS, Timing

LAN = PRESETS["lan"]


def request_record(**changes: Any) -> RequestRecord:
    """A finished request as the access log writes it and taps show it."""
    fields: dict[str, Any] = {
        "time": "2026-11-30T09:41:02.123Z",
        "node": "gateway-3fa2c1-w0",
        "request_id": "5f0c-1a",
        "method": "GET",
        "authority": "hello",
        "path": "/world",
        "route": "host",
        "service": "hello",
        "instance": "hello-1",
        "attempts": 1,
        "status": 200,
        "flags": "-",
        "duration_ms": 2.41,
        "bytes_in": 0,
        "bytes_out": 27,
    }
    return RequestRecord(**(fields | changes))


def heartbeat(
    instance: str = "i1",
    service: str = "orders",
    *,
    incarnation: int = 1,
    seq: int = 1,
    **fields: Any,
) -> Heartbeat:
    """A heartbeat of `service/instance`; any other Heartbeat field can be given."""
    fields.setdefault("host", "10.0.0.1")
    fields.setdefault("port", 9000)
    return Heartbeat(service=service, instance=instance, incarnation=incarnation, seq=seq, **fields)


def leave(
    instance: str = "i1",
    service: str = "orders",
    *,
    incarnation: int = 1,
    seq: int = 2,
    reason: str = "shutdown",
) -> Leave:
    return Leave(
        service=service,
        instance=instance,
        incarnation=incarnation,
        seq=seq,
        reason=reason,  # type: ignore[arg-type]
    )


def full_heartbeat() -> Heartbeat:
    """A heartbeat with every field set away from its default."""
    return Heartbeat(
        service="orders",
        instance="orders-7f3a_01",
        role="gateway",
        host="[::1]",
        port=65535,
        zone="eu-west-1a",
        version="1.4.2+build.7",
        weight=10_000,
        meta={"team": "checkout", "k8s.io/pod": "orders-0"},
        incarnation=3,
        seq=42,
        health="failing",
        draining=True,
        interval=0.25,
        admin_port=15000,
    )


def beat(
    instance: str = "i1", service: str = "orders", *, incarnation: int = 1, seq: int = 2
) -> Beat:
    """A short heartbeat of `service/instance`: liveness of the record already sent."""
    return Beat(service=service, instance=instance, incarnation=incarnation, seq=seq)


def load_report(
    instance: str = "i1", service: str = "orders", *, incarnation: int = 1, load: Load | None = None
) -> LoadReport:
    """What `service/instance` forwarded lately (default: no figures yet)."""
    figures = Load() if load is None else load
    return LoadReport(service=service, instance=instance, incarnation=incarnation, load=figures)


def full_load_report() -> LoadReport:
    """A load report with every field set away from its default."""
    return load_report(
        "orders-7f3a_01",
        incarnation=3,
        load=Load(
            window=1.25,
            services={
                "billing": ServiceTraffic(
                    requests=9,
                    errors=2,
                    inflight=1,
                    latency=[0, 3, 6],
                    instances={"billing-1": InstanceTraffic(requests=9, errors=2, ejected=True)},
                )
            },
            omitted=3,
        ),
    )


def evidence(**fields: Any) -> Evidence:
    fields.setdefault("service", "orders")
    fields.setdefault("instance", "i1")
    fields.setdefault("observer", "gw-1")
    fields.setdefault("reporter", "gateway")
    fields.setdefault("signal", "refused")
    return Evidence(**fields)


def event(**fields: Any) -> Event:
    fields.setdefault("id", "instance.up:orders:i1:1:1")
    fields.setdefault("kind", "instance.up")
    fields.setdefault("service", "orders")
    return Event(**fields)


def sync(node: str = "gw-1") -> Sync:
    return Sync(node=node)


def new_view(timing: Timing = LAN) -> v.View:
    return v.View(timing=timing)


def feed(view: v.View, *messages: Any, now: float) -> tuple[v.View, list[v.Effect]]:
    """Apply `messages` in order at time `now`; return the view and all effects."""
    effects: list[v.Effect] = []
    for message in messages:
        view, more = v.apply(view, message, now)
        effects.extend(more)
    return view, effects


def kinds(effects: list[v.Effect]) -> list[str]:
    """The event kinds (or `dropped:<reason>`) of `effects`, in order."""
    return [e.kind if isinstance(e, Event) else f"dropped:{e.reason}" for e in effects]


def service_defaults(**settings: Any) -> Service:
    """A node's settings-made Service: what a Service document leaves out, under `settings`."""
    return default_service(Settings(**settings))


@dataclass
class RequestHead:
    """A request as routing reads it (mesh.forwarding.routing.RequestHead)."""

    target: bytes
    host: bytes = b""
    method: bytes = b"GET"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    client: bytes = b"127.0.0.1"


# --- edge authentication: signing keys and tokens ------------------------------------

ISSUER = "https://login.example.com"
AUDIENCE = "api.example.com"
HS_SECRET = b"s" * 32


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key per test run: making one costs tens of milliseconds."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def token(key: Any = None, algorithm: str = "RS256", *, now: float, **claims: Any) -> bytes:
    """A JWT valid for an hour from `now`, for ISSUER and AUDIENCE, signed by `key`
    (the RSA key by default); `claims` override or, given as None, remove claims."""
    body: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, rsa_key() if key is None else key, algorithm=algorithm).encode()
