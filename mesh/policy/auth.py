"""Edge authentication of a route: none, API keys (stored as SHA-256 digests) or JWT."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mesh.policy.fields import Duration, HeaderValue, Token
from mesh.security.jwt_keys import public_key

MAX_CLOCK_SKEW = 300.0

Consumer = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[!-~]{1,256}\Z",
        description="a consumer name (visible ASCII without spaces, 1 to 256 characters)",
    ),
]
KeyDigest = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9a-f]{64}\Z",
        description=(
            "the key's SHA-256 as 64 lower-case hex digits, never the key itself"
            " (make it with: mesh policy hash-key)"
        ),
    ),
]
QueryName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9._~-]{1,64}\Z",
        description="a query parameter name (letters, digits, '.', '_', '~', '-')",
    ),
]
FilePath = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^/[ -~]{0,1023}\Z",
        description="an absolute path, read on each gateway and agent that applies the route",
    ),
]
ClaimName = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z0-9_.:/-]{1,64}\Z", description="a claim name such as sub"),
]
# The key header is removed before forwarding: never one that frames or routes the
# request (removing it would change what the upstream reads), nor the mesh's own.
_NOT_KEY_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "cookie",
    }
)

Audience = Annotated[tuple[HeaderValue, ...], msgspec.Meta(min_length=1, max_length=16)]
Allowed = Annotated[tuple[Consumer, ...], msgspec.Meta(max_length=1024)]


class NoAuth(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="none", tag_field="type"):
    """No edge authentication."""


class ApiKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One consumer's key, as its digest: the bucket, its history and every node hold it."""

    consumer: Consumer
    sha256: KeyDigest


class ApiKeyAuth(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="api_key",
    tag_field="type",
):
    """A key in `header`, or in the `query` parameter when one is named; both are removed
    before forwarding. `allow` lists the consumers admitted (none given: every key holder).
    """

    keys: Annotated[tuple[ApiKey, ...], msgspec.Meta(min_length=1, max_length=256)]
    header: Token = "x-api-key"
    query: QueryName | None = None
    allow: Allowed = ()

    def __post_init__(self) -> None:
        header = self.header.lower()
        if header in _NOT_KEY_HEADERS or header.startswith("x-mesh-"):
            raise ValueError(f"header: {self.header} cannot carry a key (it is removed upstream)")
        digests = [key.sha256 for key in self.keys]
        if len(set(digests)) != len(digests):
            raise ValueError("keys: the same key is listed twice")
        unknown = set(self.allow) - {key.consumer for key in self.keys}
        if unknown:
            raise ValueError(f"allow: no key belongs to {', '.join(sorted(unknown))}")


class JwtAuth(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="jwt",
    tag_field="type",
):
    """A bearer token (`Authorization: Bearer ...`) signed with `algorithm` by one key of
    exactly one source: `public_key` (PEM, RS256/ES256), `key_file` (the PEM public key, or
    HS256's shared secret) or `jwks_file`. Files are re-read when they change.
    """

    algorithm: Literal["HS256", "RS256", "ES256"]
    issuer: Annotated[HeaderValue, msgspec.Meta(min_length=1)]
    audience: Audience
    public_key: Annotated[str, msgspec.Meta(max_length=16_384)] | None = None
    key_file: FilePath | None = None
    jwks_file: FilePath | None = None
    consumer_claim: ClaimName = "sub"
    clock_skew: Duration = Duration(30.0)
    allow: Allowed = ()

    def __post_init__(self) -> None:
        sources = [self.public_key, self.key_file, self.jwks_file]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("give exactly one of public_key, key_file or jwks_file")
        if self.clock_skew > MAX_CLOCK_SKEW:
            raise ValueError(f"clock_skew: at most {MAX_CLOCK_SKEW:g} s")
        if self.public_key is not None:
            if self.algorithm == "HS256":
                # Every node and every reader of the bucket sees a document, with history.
                raise ValueError(
                    "public_key: an HS256 secret never goes in a policy; put it in key_file"
                )
            try:
                public_key(self.algorithm, self.public_key.encode())
            except ValueError as exc:
                raise ValueError(f"public_key: {exc}") from None


Auth = NoAuth | ApiKeyAuth | JwtAuth
