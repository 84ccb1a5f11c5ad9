"""Edge authentication, the stage after routing: who the client is, and may it use the route."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol
from urllib.parse import unquote_to_bytes

from mesh.errors import ConsumerNotAllowed, Unauthenticated
from mesh.forwarding.key_files import KeyFile
from mesh.forwarding.routing import RequestHead
from mesh.policy.auth import ApiKeyAuth, JwtAuth
from mesh.security import jwt_keys
from mesh.security.api_keys import ApiKeys
from mesh.security.jwt_keys import KeyRing
from mesh.security.jwt_tokens import InvalidToken, TokenRules, verify

Header = tuple[bytes, bytes]


class Identity(NamedTuple):
    """What authentication established, and the request as it may be forwarded."""

    consumer: bytes
    key_digest: bytes  # the API key's SHA-256 (hex), what `rate_limit.key: api_key` counts
    target: bytes  # without the API key's query parameter
    credential: bytes | None  # the header that carried an API key: not forwarded


class Authenticator(Protocol):
    """One route's check: an Identity, or Unauthenticated (401) / ConsumerNotAllowed (403)."""

    def __call__(self, request: RequestHead, target: bytes, now: float) -> Identity: ...

    def forwarded(self, target: bytes) -> bytes:
        """`target` as it goes upstream once admitted (no key checked: `mesh explain`)."""
        ...


def authenticator(
    route: str, auth: ApiKeyAuth | JwtAuth, wall: Callable[[], float]
) -> Authenticator:
    """The check for `route`'s auth; ValueError if a key file it names is unusable here."""
    if isinstance(auth, ApiKeyAuth):
        return ApiKeyCheck(route, auth)
    return JwtCheck(route, auth, wall)


class ApiKeyCheck:
    """A key from the header (first) or the query parameter; both are removed upstream."""

    __slots__ = ("_allow", "_challenge", "_header", "_keys", "_query", "_route")

    def __init__(self, route: str, auth: ApiKeyAuth) -> None:
        self._route = route
        self._keys = ApiKeys((key.sha256, key.consumer) for key in auth.keys)
        self._header = auth.header.lower().encode()
        self._query = auth.query.encode() if auth.query else None
        self._allow = frozenset(auth.allow)
        where = f', query="{auth.query}"' if auth.query else ""
        self._challenge = f'ApiKey realm="{route}", header="{auth.header}"{where}'

    def __call__(self, request: RequestHead, target: bytes, now: float) -> Identity:
        key = _only(request.headers, self._header, self._challenge)
        if self._query is not None:
            in_query, target = _take_query(target, self._query, self._challenge)
            key = key if key is not None else in_query
        if not key:
            raise Unauthenticated("no API key", challenge=self._challenge)
        holder = self._keys.holder(key)
        if holder is None:
            raise Unauthenticated("unknown API key", challenge=self._challenge)
        _admit(self._route, self._allow, holder.consumer)
        return Identity(holder.consumer.encode(), holder.digest.encode(), target, self._header)

    def forwarded(self, target: bytes) -> bytes:
        if self._query is None:
            return target
        return _take_query(target, self._query, self._challenge)[1]


class JwtCheck:
    """`Authorization: Bearer <JWT>`, verified by mesh.security.jwt_tokens; forwarded as is."""

    __slots__ = ("_allow", "_file", "_ring", "_route", "_rules", "_wall")

    def __init__(self, route: str, auth: JwtAuth, wall: Callable[[], float]) -> None:
        self._route = route
        self._wall = wall
        self._allow = frozenset(auth.allow)
        self._rules = TokenRules(
            issuer=auth.issuer,
            audience=auth.audience,
            consumer_claim=auth.consumer_claim,
            clock_skew=auth.clock_skew,
        )
        algorithm = auth.algorithm
        self._file: KeyFile[KeyRing] | None = None
        self._ring: KeyRing | None = None
        if auth.public_key is not None:
            key = jwt_keys.public_key(algorithm, auth.public_key.encode())
            self._ring = KeyRing(algorithm, {None: key})
        elif auth.key_file is not None:
            self._file = KeyFile(auth.key_file, lambda data: jwt_keys.key_file(algorithm, data))
        else:
            assert auth.jwks_file is not None
            self._file = KeyFile(auth.jwks_file, lambda data: jwt_keys.jwks(algorithm, data))

    def __call__(self, request: RequestHead, target: bytes, now: float) -> Identity:
        challenge = f'Bearer realm="{self._route}"'
        value = _only(request.headers, b"authorization", challenge)
        scheme, _, token = (value or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise Unauthenticated("no bearer token", challenge=challenge)
        ring = self._file.current(now) if self._file is not None else self._ring
        if ring is None:  # the key file was deleted: nothing verifies, whatever the token
            raise Unauthenticated(
                "no key verifies tokens on this route",
                challenge=f'{challenge}, error="invalid_token"',
            )
        try:
            consumer = verify(token.strip(), ring, self._rules, self._wall())
        except InvalidToken as exc:
            # The reason goes in the JSON body only: it may quote what the token says.
            raise Unauthenticated(
                str(exc), challenge=f'{challenge}, error="invalid_token"'
            ) from None
        _admit(self._route, self._allow, consumer)
        return Identity(consumer.encode(), b"", target, None)

    def forwarded(self, target: bytes) -> bytes:
        return target  # the token travels in a header, forwarded as is


def _only(headers: Sequence[Header], name: bytes, challenge: str) -> bytes | None:
    """The one value of header `name`; two are refused, as the upstream might read either."""
    found: bytes | None = None
    for key, value in headers:
        if key.lower() == name:
            if found is not None:
                raise Unauthenticated(f"more than one {name.decode()} header", challenge=challenge)
            found = value
    return found


def _take_query(target: bytes, name: bytes, challenge: str) -> tuple[bytes | None, bytes]:
    """(the value of query parameter `name`, `target` without it); two are refused, as
    the upstream might read either (as two key headers are)."""
    path, question, query = target.partition(b"?")
    if not question:
        return None, target
    found: bytes | None = None
    kept = []
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key) == name:
            if found is not None:
                raise Unauthenticated(
                    f"more than one {name.decode()} query parameter", challenge=challenge
                )
            found = unquote_to_bytes(value)
        else:
            kept.append(pair)
    if len(kept) == query.count(b"&") + 1:
        return None, target
    return found, (path + b"?" + b"&".join(kept) if kept else path)


def masked(target: bytes, names: frozenset[bytes]) -> bytes:
    """`target` with the values of the query parameters `names` (API keys) shown as ***."""
    path, question, query = target.partition(b"?")
    if not question or not names:
        return target
    pairs = []
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        pairs.append(key + b"=***" if value and unquote_to_bytes(key) in names else pair)
    return path + b"?" + b"&".join(pairs)


def _admit(route: str, allow: frozenset[str], consumer: str) -> None:
    if allow and consumer not in allow:
        raise ConsumerNotAllowed(f"consumer {consumer!r} is not allowed on route {route!r}")
