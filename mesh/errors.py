"""The one hierarchy of mesh errors, grouped by category, each carrying its data."""

from __future__ import annotations


class MeshError(Exception):
    """Root of every error natsmesh raises on purpose."""


# --- input from outside: settings, names, wire messages ------------------------------


class ConfigError(MeshError):
    """A setting or command-line value is unusable; the message says which and why."""


class InvalidName(MeshError, ValueError):
    """A service or instance name that cannot appear in a NATS subject."""

    def __init__(self, name: str) -> None:
        super().__init__(f"invalid name {name!r}: use letters, digits, '_' and '-' only")
        self.name = name


class InvalidMessage(MeshError):
    """A wire message that failed strict decoding or does not match its subject."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"invalid message on {subject}: {reason}")
        self.subject = subject
        self.reason = reason


# --- the control plane: NATS ------------------------------------------------------------


class BusError(MeshError):
    """NATS could not do what was asked."""


class BusUnavailable(BusError):
    """Not connected to NATS, or no server answered in time."""


class NoResponders(BusUnavailable):
    """A request that no subscriber of its subject could answer."""


class BusRefused(BusUnavailable):
    """NATS refused our credentials or TLS: retrying with the same settings cannot help."""


class BusTimeout(BusError):
    """A request or acknowledgement did not arrive in time."""


class Conflict(BusError):
    """A compare-and-set write lost: someone changed the key since it was read."""

    def __init__(self, key: str, expected: int) -> None:
        super().__init__(f"{key} changed since revision {expected} was read")
        self.key = key
        self.expected = expected


class NatsServerError(MeshError):
    """The embedded nats-server binary is missing or did not start."""


# --- the HAProxy data plane ---------------------------------------------------------------


class HaproxyError(MeshError):
    """The HAProxy data plane's binary is missing or unfit, or HAProxy refused a config,
    a start or a reload; the message is one line naming the cause."""


class RuntimeApiError(HaproxyError):
    """HAProxy's runtime API (its CLI socket) could not be reached, or refused a command."""


# --- identities: the mesh CA and the certificates it signs ------------------------------


class CertificateError(MeshError):
    """A certificate could not be had: the CA refused the request, or could not be asked."""


# --- processes: the ports they are given -----------------------------------------------


class PortUnavailable(MeshError):
    """An address a process was told to listen on cannot be bound (taken, or not ours)."""

    def __init__(self, address: str, what: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address} ({what}): {reason}")
        self.address = address
        self.what = what
        self.reason = reason


# --- the forwarding path: each stage's failure, turned into HTTP by mesh.engine.replies --


class ProxyError(MeshError):
    """A request the proxy could not complete; `instance` names the upstream tried, if any."""

    def __init__(self, detail: str, *, service: str = "", instance: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.service = service
        self.instance = instance


class BadRequest(ProxyError):
    """The client sent something that is not valid HTTP/1.1 or is ambiguous (smuggling)."""


class HeadersTooLarge(ProxyError):
    """The request line or headers exceed the configured limit."""


class BodyTooLarge(ProxyError):
    """The request body exceeds the configured limit."""


class ClientTimeout(ProxyError):
    """The client did not send its whole request in time (a body held for the limit)."""


class NoRoute(ProxyError):
    """No route matches the request; `routes` names some of those considered (see
    mesh.forwarding.policy_routes), `more_routes` counts the others. `unknown`: the
    service names the request may have meant that this node does not know (a node that
    follows services on their first call follows these, then routes again)."""

    def __init__(
        self,
        detail: str,
        *,
        service: str = "",
        routes: tuple[str, ...] = (),
        more_routes: int = 0,
        unknown: tuple[str, ...] = (),
    ) -> None:
        super().__init__(detail, service=service)
        self.routes = routes
        self.more_routes = more_routes
        self.unknown = unknown


class NoHealthyUpstream(ProxyError):
    """The service exists in no routable state: no alive, healthy, non-draining instance."""


class UpstreamConnectFailure(ProxyError):
    """Connecting to the chosen instance failed (refused, unreachable)."""


class UpstreamRefused(UpstreamConnectFailure):
    """Nothing listens at the instance's address (ECONNREFUSED): its process is gone."""


class Overflow(ProxyError):
    """The service's concurrency limit is reached on this node."""


class RateLimited(ProxyError):
    """The route's rate limit for this client key is exhausted."""

    def __init__(self, detail: str, *, retry_after: float, service: str = "") -> None:
        super().__init__(detail, service=service)
        self.retry_after = retry_after


class Unauthenticated(ProxyError):
    """The route's edge authentication found no credentials, or none that prove anything.

    `challenge` is the WWW-Authenticate value: the scheme, realm and, for a bearer token
    that was given but refused, error="invalid_token" (RFC 6750 §3).
    """

    def __init__(self, detail: str, *, challenge: str) -> None:
        super().__init__(detail)
        self.challenge = challenge


class ConsumerNotAllowed(ProxyError):
    """The client proved who it is, and the route's `auth.allow` does not list it."""


class AccessDenied(ProxyError):
    """The callee's access rules (`access.allow_from`) do not admit the calling service."""

    def __init__(self, detail: str, *, service: str, caller: str) -> None:
        super().__init__(detail, service=service)
        self.caller = caller


class RetriesExhausted(ProxyError):
    """Every allowed attempt failed; `last` is the final attempt's error."""

    def __init__(self, last: ProxyError, attempts: int) -> None:
        super().__init__(
            f"{attempts} attempts failed; last: {last.detail}",
            service=last.service,
            instance=last.instance,
        )
        self.last = last
        self.attempts = attempts


class UpstreamTimeout(ProxyError):
    """Connect or response timeout towards the chosen instance."""


class UpstreamReset(ProxyError):
    """The instance closed or reset the connection before its response was complete."""


class UpstreamProtocolError(ProxyError):
    """The instance answered with something this proxy cannot relay as valid HTTP/1.1."""
