"""mesh.messages: every message type round-trips; malformed or misplaced payloads are refused."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from factories import (
    beat,
    event,
    evidence,
    full_heartbeat,
    full_load_report,
    heartbeat,
    leave,
    load_report,
    sync,
)

from mesh import subjects
from mesh.errors import InvalidMessage
from mesh.messages import (
    LATENCY_BUCKETS,
    MAX_LOAD_COUNT,
    MAX_LOAD_INSTANCES,
    MAX_LOAD_SERVICES,
    MAX_MESSAGE_BYTES,
    MIN_LOAD_WINDOW,
    Beat,
    Event,
    Evidence,
    Heartbeat,
    InstanceTraffic,
    Leave,
    Load,
    LoadReport,
    Message,
    ServiceTraffic,
    decode,
    encode,
)

HB = subjects.heartbeat("orders", "i1")
LD = subjects.load("orders", "i1")
EV = subjects.evidence("gateway", "orders", "i1")


def subject_of(message: Message) -> str:
    """The subject each message type travels on."""
    if isinstance(message, Heartbeat | Beat):
        return subjects.heartbeat(message.service, message.instance)
    if isinstance(message, LoadReport):
        return subjects.load(message.service, message.instance)
    if isinstance(message, Leave):
        return subjects.leave(message.service, message.instance)
    if isinstance(message, Evidence):
        return subjects.evidence(message.reporter or "", message.service, message.instance)
    if isinstance(message, Event):
        return subjects.event(message.kind, message.service)
    return subjects.SYNC


# --- round trips ---------------------------------------------------------------------

ROUND_TRIPS: list[Message] = [
    heartbeat(),
    full_heartbeat(),
    beat(),
    load_report(),
    full_load_report(),
    leave(),
    leave(reason="drain", incarnation=0, seq=0),
    sync(),
    evidence(),
    evidence(signal="5xx", streak=5, observer="orders-agent_2"),
    event(),
    event(
        id="health.failing:orders:i1:3:9",
        kind="health.failing",
        instance="i1",
        node="gw-1",
        at=1_700_000_000.5,
        detail={"previous": "passing", "a.b/c": "d"},
    ),
]


@pytest.mark.parametrize("message", ROUND_TRIPS, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    data = encode(message)
    assert decode(subject_of(message), data) == message


@pytest.mark.parametrize(
    ("message", "tag"),
    [
        (heartbeat(), "hb"),
        (beat(), "beat"),
        (load_report(), "load"),
        (leave(), "leave"),
        (sync(), "sync"),
        (evidence(), "evidence"),
        (event(), "event"),
    ],
)
def test_encoding_is_tagged_json(message: Message, tag: str) -> None:
    assert json.loads(encode(message))["type"] == tag


def test_defaults_of_a_minimal_heartbeat() -> None:
    data = b'{"type":"hb","service":"orders","instance":"i1","host":"h","port":1,'
    data += b'"incarnation":0,"seq":0}'
    hb = decode(HB, data)
    assert isinstance(hb, Heartbeat)
    assert (hb.role, hb.weight, hb.health, hb.draining, hb.interval) == (
        "agent",
        1,
        "passing",
        False,
        1.0,
    )
    assert hb.meta == {}
    assert hb.admin_port is None


def test_unknown_fields_are_tolerated() -> None:
    """Additive changes stay within v1: a newer sender's extra fields are ignored."""
    doc = msgspec.to_builtins(heartbeat())
    doc["future_field"] = {"nested": [1, 2, 3]}
    doc["load"] = {"window": 1.0}  # what senders before load reports put in heartbeats
    assert decode(HB, json.dumps(doc).encode()) == heartbeat()
    report = msgspec.to_builtins(load_report())
    report["load"]["p99_ms"] = 12.0
    assert decode(LD, json.dumps(report).encode()) == load_report()


def test_int_is_accepted_where_a_float_is_expected() -> None:
    doc = msgspec.to_builtins(heartbeat()) | {"interval": 2}
    hb = decode(HB, json.dumps(doc).encode())
    assert isinstance(hb, Heartbeat)
    assert hb.interval == 2.0


def test_a_payload_of_exactly_the_limit_is_accepted() -> None:
    doc = msgspec.to_builtins(heartbeat()) | {"pad": ""}
    size = len(json.dumps(doc, separators=(",", ":")))
    doc["pad"] = "x" * (MAX_MESSAGE_BYTES - size)
    data = json.dumps(doc, separators=(",", ":")).encode()
    assert len(data) == MAX_MESSAGE_BYTES
    assert decode(HB, data) == heartbeat()


def test_the_largest_heartbeat_and_load_report_stay_well_under_the_limit() -> None:
    """The longest names, the largest counts and 64 meta entries: the caps on load
    figures keep the largest report a sender can make far from the limit, and a full
    heartbeat (which no longer carries them) is a fraction of it."""
    big = MAX_LOAD_COUNT
    longest = lambda prefix, i: f"{prefix}{i:03}".ljust(128, "x")  # noqa: E731
    per_service = MAX_LOAD_INSTANCES // MAX_LOAD_SERVICES
    figures = {
        "requests": big,
        "errors": big,
        "inflight": big,
        "latency": [big] * LATENCY_BUCKETS,
    }
    hb = msgspec.structs.replace(
        full_heartbeat(),
        service="s" * 128,
        instance="i" * 128,
        host="h" * 253,
        meta={f"k{i:02}".ljust(63, "k"): "v" * 128 for i in range(64)},
    )
    data = encode(hb)
    assert len(data) < 0.3 * MAX_MESSAGE_BYTES, len(data)
    assert decode(subjects.heartbeat(hb.service, hb.instance), data) == hb
    report = msgspec.structs.replace(
        full_load_report(),
        service="s" * 128,
        instance="i" * 128,
        load=Load(
            window=3600.0,
            omitted=big,
            services={
                longest("s", s): ServiceTraffic(
                    **figures,
                    instances={
                        longest("i", s * per_service + i): InstanceTraffic(**figures, ejected=True)
                        for i in range(per_service)
                    },
                )
                for s in range(MAX_LOAD_SERVICES)
            },
        ),
    )
    data = encode(report)
    assert len(data) < 0.8 * MAX_MESSAGE_BYTES, len(data)
    assert decode(subjects.load(report.service, report.instance), data) == report


# --- rejection ------------------------------------------------------------------------


DELETE = object()


def hb_doc(**changes: Any) -> bytes:
    """A heartbeat for orders/i1 as JSON, with fields changed (DELETE removes the field)."""
    doc = msgspec.to_builtins(heartbeat())
    for key, value in changes.items():
        if value is DELETE:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def load_doc(**changes: Any) -> bytes:
    """A load report of orders/i1 as JSON, with fields changed."""
    return json.dumps(msgspec.to_builtins(load_report()) | changes).encode()


def doc(message: Message, **changes: Any) -> bytes:
    return json.dumps(msgspec.to_builtins(message) | changes).encode()


MALFORMED: list[tuple[str, bytes, str]] = [
    # (test id, payload, expected fragment of the reason); all on mesh.v1.hb.orders.i1
    ("not-json", b"hello", "malformed"),
    ("empty", b"", "truncated"),
    ("truncated", hb_doc()[:-1], "truncated"),
    ("array", b"[1,2]", "Expected `object`, got `array`"),
    ("string-for-int", hb_doc(port="9000"), "Expected `int`, got `str` - at `$.port`"),
    ("bool-for-int", hb_doc(seq=True), "Expected `int`, got `bool` - at `$.seq`"),
    ("float-for-int", hb_doc(port=9000.5), "Expected `int`, got `float` - at `$.port`"),
    ("null-for-str", hb_doc(zone=None), "Expected `str`, got `null` - at `$.zone`"),
    ("string-for-bool", hb_doc(draining="yes"), "Expected `bool`, got `str` - at `$.draining`"),
    ("missing-type", hb_doc(type=DELETE), "missing required field `type`"),
    ("missing-seq", hb_doc(seq=DELETE), "missing required field `seq`"),
    ("missing-host", hb_doc(host=DELETE), "missing required field `host`"),
    ("missing-incarnation", hb_doc(incarnation=DELETE), "missing required field `incarnation`"),
    ("unknown-tag", hb_doc(type="bogus"), "Invalid value 'bogus' - at `$.type`"),
    ("port-0", hb_doc(port=0), "at `$.port`"),
    ("port-65536", hb_doc(port=65536), "at `$.port`"),
    ("admin-port-0", hb_doc(admin_port=0), "at `$.admin_port`"),
    ("weight-0", hb_doc(weight=0), "at `$.weight`"),
    ("weight-10001", hb_doc(weight=10_001), "at `$.weight`"),
    ("seq-negative", hb_doc(seq=-1), "at `$.seq`"),
    ("incarnation-negative", hb_doc(incarnation=-1), "at `$.incarnation`"),
    ("interval-0", hb_doc(interval=0), "at `$.interval`"),
    ("interval-too-long", hb_doc(interval=3601), "at `$.interval`"),
    ("unknown-role", hb_doc(role="router"), "Invalid enum value 'router' - at `$.role`"),
    ("unknown-health", hb_doc(health="sick"), "at `$.health`"),
    ("empty-host", hb_doc(host=""), "at `$.host`"),
    ("host-with-space", hb_doc(host="a b"), "at `$.host`"),
    ("host-with-newline", hb_doc(host="h\n"), "at `$.host`"),
    ("zone-too-long", hb_doc(zone="z" * 129), "length <= 128 - at `$.zone`"),
    ("meta-too-many", hb_doc(meta={f"k{i}": "v" for i in range(65)}), "length <= 64"),
    ("meta-key-space", hb_doc(meta={"a b": "v"}), "at `key` in `$.meta`"),
    ("meta-key-newline", hb_doc(meta={"a\n": "v"}), "at `key` in `$.meta`"),
    ("meta-value-too-long", hb_doc(meta={"k": "v" * 129}), "at `$.meta[...]`"),
]


MALFORMED_LOADS: list[tuple[str, bytes, str]] = [
    # (test id, payload, expected fragment of the reason); all on mesh.v1.load.orders.i1
    ("window-infinite", load_doc(load={"window": 1.5}).replace(b"1.5", b"1e999"), "out of range"),
    ("window-negative", load_doc(load={"window": -1}), "at `$.load.window`"),
    ("window-too-long", load_doc(load={"window": 3601}), "at `$.load.window`"),
    ("omitted-negative", load_doc(load={"omitted": -1}), "at `$.load.omitted`"),
    (
        "load-services-too-many",
        load_doc(load={"services": {f"s{i}": {} for i in range(MAX_LOAD_SERVICES + 1)}}),
        "at `$.load.services`",
    ),
    (
        "load-service-name",
        load_doc(load={"services": {"a.b": {}}}),
        "at `key` in `$.load.services`",
    ),
    (
        "load-requests-negative",
        load_doc(load={"services": {"s": {"requests": -1}}}),
        "at `$.load.services[...].requests`",
    ),
    (
        "load-latency-too-long",
        load_doc(load={"services": {"s": {"latency": [0] * (LATENCY_BUCKETS + 1)}}}),
        "at `$.load.services[...].latency`",
    ),
    (
        "load-latency-negative",
        load_doc(load={"services": {"s": {"latency": [1, -1]}}}),
        "at `$.load.services[...].latency[1]`",
    ),
    (
        "load-instances-too-many",
        load_doc(
            load={
                "services": {
                    "s": {"instances": {f"i{i}": {} for i in range(MAX_LOAD_INSTANCES + 1)}}
                }
            }
        ),
        "at `$.load.services[...].instances`",
    ),
    (
        "load-ejected-not-bool",
        load_doc(load={"services": {"s": {"instances": {"i": {"ejected": 1}}}}}),
        "at `$.load.services[...].instances[...].ejected`",
    ),
    # Figures no node could send: each would make a rate, a sum or a quantile absurd, or
    # overflow a float (10**400 as a float is an OverflowError).
    (
        "load-requests-10e400",
        load_doc(load={"window": 1.0, "services": {"hello": {"requests": 10**400}}}),
        "at `$.load.services[...].requests`",
    ),
    *(
        (
            f"load-{field}-over-the-bound",
            load_doc(load={"window": 1.0, "services": {"s": {field: MAX_LOAD_COUNT + 1}}}),
            f"<= {MAX_LOAD_COUNT} - at `$.load.services[...].{field}`",
        )
        for field in ("requests", "errors", "inflight")
    ),
    (
        "load-latency-bucket-over-the-bound",
        load_doc(load={"window": 1.0, "services": {"s": {"latency": [1, MAX_LOAD_COUNT + 1]}}}),
        "at `$.load.services[...].latency[1]`",
    ),
    (
        "load-instance-requests-over-the-bound",
        load_doc(load={"services": {"s": {"instances": {"i": {"requests": MAX_LOAD_COUNT + 1}}}}}),
        "at `$.load.services[...].instances[...].requests`",
    ),
    (
        "omitted-over-the-bound",
        load_doc(load={"omitted": MAX_LOAD_COUNT + 1}),
        "at `$.load.omitted`",
    ),
    ("window-1e-300", load_doc(load={"window": 1e-300}), "load window 1e-300 s: 0 or 0.05 s"),
    ("window-too-short", load_doc(load={"window": MIN_LOAD_WINDOW * 0.99}), "load window"),
]


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [pytest.param(HB, p, r, id=i) for i, p, r in MALFORMED]
    + [pytest.param(LD, p, r, id=f"load-{i}") for i, p, r in MALFORMED_LOADS],
)
def test_malformed_payloads_are_refused(subject: str, payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(subject, payload)
    assert caught.value.subject == subject
    assert reason.lower() in caught.value.reason.lower()
    assert subject in str(caught.value)


def test_load_figures_at_their_bounds_are_accepted() -> None:
    at_bounds = ServiceTraffic(
        requests=MAX_LOAD_COUNT,
        errors=MAX_LOAD_COUNT,
        inflight=MAX_LOAD_COUNT,
        latency=[MAX_LOAD_COUNT] * LATENCY_BUCKETS,
    )
    for window in (MIN_LOAD_WINDOW, 3600.0):
        report = load_report(load=Load(window=window, services={"s": at_bounds}))
        assert decode(LD, encode(report)) == report
    assert decode(LD, load_doc(load={"window": 0})) == load_report()  # said outright: no figures


NAMES_THAT_INJECT = ["a.b", "a b", "a>", "a*", ">", "*", "", "x" * 129, "orders\n", "é"]


@pytest.mark.parametrize("name", NAMES_THAT_INJECT)
@pytest.mark.parametrize(
    ("subject", "message", "field"),
    [
        pytest.param(HB, heartbeat(), "service", id="hb-service"),
        pytest.param(HB, heartbeat(), "instance", id="hb-instance"),
        pytest.param(HB, beat(), "service", id="beat-service"),
        pytest.param(HB, beat(), "instance", id="beat-instance"),
        pytest.param(LD, load_report(), "instance", id="load-instance"),
        pytest.param(subjects.leave("orders", "i1"), leave(), "service", id="leave-service"),
        pytest.param(EV, evidence(), "observer", id="observer"),
        pytest.param(EV, evidence(), "reporter", id="reporter"),
        pytest.param(subjects.SYNC, sync(), "node", id="sync-node"),
        pytest.param(subjects.event("instance.up", "orders"), event(), "service", id="event"),
    ],
)
def test_names_that_could_inject_into_a_subject_are_refused(
    subject: str, message: Message, field: str, name: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(subject, doc(message, **{field: name}))
    assert f"`$.{field}`" in caught.value.reason


def test_oversize_payload_is_refused_before_parsing() -> None:
    data = b"x" * (MAX_MESSAGE_BYTES + 1)  # not even JSON: the size check comes first
    with pytest.raises(InvalidMessage) as caught:
        decode(HB, data)
    assert caught.value.reason == f"{MAX_MESSAGE_BYTES + 1} bytes exceeds {MAX_MESSAGE_BYTES}"


WRONG_FAMILY: list[tuple[str, Message, str]] = [
    (subjects.leave("orders", "i1"), heartbeat(), "a Heartbeat on a leave subject"),
    (HB, leave(), "a Leave on a hb subject"),
    (HB, sync(), "a Sync on a hb subject"),
    (EV, heartbeat(), "a Heartbeat on a evidence subject"),
    (subjects.event("instance.up", "orders"), heartbeat(), "a Heartbeat on a events subject"),
    (subjects.SYNC, heartbeat(), "a Heartbeat on a sync subject"),
    (subjects.SYNC, event(), "a Event on a sync subject"),
    (HB, event(), "a Event on a hb subject"),
    (HB, load_report(), "a LoadReport on a hb subject"),
    (LD, heartbeat(), "a Heartbeat on a load subject"),
    (LD, beat(), "a Beat on a load subject"),
    (subjects.leave("orders", "i1"), beat(), "a Beat on a leave subject"),
]


@pytest.mark.parametrize(("subject", "message", "reason"), WRONG_FAMILY)
def test_a_message_on_another_types_subject_is_refused(
    subject: str, message: Message, reason: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(subject, encode(message))
    assert caught.value.reason == reason


IMPERSONATION: list[tuple[str, Message, str]] = [
    (HB, heartbeat(service="billing"), "names billing/i1, its subject orders/i1"),
    (HB, heartbeat(instance="i2"), "names orders/i2, its subject orders/i1"),
    (subjects.leave("orders", "i1"), leave("i2"), "names orders/i2, its subject orders/i1"),
    # A short beat is liveness in an instance's name: the same check as its full record.
    (HB, beat(service="billing"), "names billing/i1, its subject orders/i1"),
    (HB, beat("i2"), "names orders/i2, its subject orders/i1"),
    ("mesh.v1.hb.orders.i1.x", beat(), "names orders/i1, its subject none"),
    (LD, load_report(service="billing"), "names billing/i1, its subject orders/i1"),
    ("mesh.v1.load.orders", load_report(), "its subject none"),
    (EV, evidence(service="billing"), "names billing/i1"),
    (EV, evidence(instance="i2"), "names orders/i2, its subject orders/i1"),
    # The reporter leads an evidence subject: an agent's credentials allow only its own.
    (EV, evidence(reporter="billing"), "reported by billing, its subject names another"),
    (EV, evidence(reporter=None), "reported by None, its subject names another"),
    ("mesh.v1.evidence.orders.i1", evidence(), "names orders/i1, its subject none"),
    # A subject with too few or too many tokens names no instance: it cannot vouch for any,
    # e.g. a credential allowed `mesh.v1.hb.orders.>` must not speak for billing.
    ("mesh.v1.hb.orders", heartbeat(service="billing"), "names billing/i1, its subject none"),
    ("mesh.v1.hb.orders.i1.x", heartbeat(service="billing"), "its subject none"),
    ("mesh.v1.hb.orders.i1.x", heartbeat(), "names orders/i1, its subject none"),
    ("mesh.v1.leave.orders", leave(), "its subject none"),
]


@pytest.mark.parametrize(("subject", "message", "reason"), IMPERSONATION)
def test_a_message_naming_another_instance_than_its_subject_is_refused(
    subject: str, message: Message, reason: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(subject, encode(message))
    assert reason in caught.value.reason


def test_subjects_outside_the_mesh_families_are_not_checked_against_names() -> None:
    """A reply inbox names no instance; the message is decoded as is."""
    assert decode("_INBOX.abc.1", encode(heartbeat(service="billing"))) == heartbeat(
        service="billing"
    )


def test_evidence_observer_need_not_match_the_subject() -> None:
    message = evidence(observer="gw-9")
    assert decode(EV, encode(message)) == message


def test_the_inbound_port_is_an_additive_heartbeat_field() -> None:
    """Agents that predate it send none (None: no inbound listener); older decoders skip it."""
    old = (
        b'{"type":"hb","service":"a","instance":"a1","host":"h","port":80,"incarnation":1,"seq":1}'
    )
    assert decode("mesh.v1.hb.a.a1", old).inbound_port is None  # type: ignore[union-attr]
    record = msgspec.json.decode(old, type=Heartbeat)
    data = encode(msgspec.structs.replace(record, inbound_port=15006))
    assert decode("mesh.v1.hb.a.a1", data) == msgspec.structs.replace(record, inbound_port=15006)

    class Before(msgspec.Struct, tag="hb", tag_field="type"):
        service: str
        port: int

    assert msgspec.json.decode(data, type=Before) == Before(service="a", port=80)
