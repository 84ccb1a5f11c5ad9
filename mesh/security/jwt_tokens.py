"""JWT verification at the edge (pure: the token, keys, rules and `now` in; a consumer out)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt

from mesh.security.jwt_keys import KeyRing

# What may become the consumer header: visible ASCII without spaces, so a claim can
# never smuggle a line break or a second value into the upstream request.
CONSUMER = re.compile(r"[!-~]{1,256}")


class InvalidToken(ValueError):
    """A token that proves nothing: the reason is safe to show (it never holds the token)."""


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a route demands of a token; times in seconds."""

    issuer: str
    audience: tuple[str, ...]  # the token's `aud` must name one of these
    consumer_claim: str = "sub"
    clock_skew: float = 30.0  # tolerated on `exp` and `nbf` either way


# Signature, `iss` and `aud` are PyJWT's; `exp` and `nbf` are checked here against the
# `now` given, so that tests and the skew edge are exact and no hidden clock is read.
_OPTIONS: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}


def verify(token: bytes, keys: KeyRing, rules: TokenRules, now: float) -> str:
    """The consumer a valid token names; InvalidToken saying why otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    algorithm = header.get("alg")
    if algorithm != keys.algorithm:
        # `none`, and HS256 signed with a public key as its secret, end here.
        raise InvalidToken(f"token algorithm {str(algorithm)[:16]!r} is not {keys.algorithm}")
    key = keys.find(header.get("kid"))
    if key is None:
        raise InvalidToken("no key with the token's kid")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[keys.algorithm],
            audience=list(rules.audience),
            issuer=rules.issuer,
            options=_OPTIONS,
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("wrong audience") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("wrong issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"no {exc.claim} claim") from None
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    _check_times(claims, now, rules.clock_skew)
    consumer = claims.get(rules.consumer_claim)
    if not isinstance(consumer, str) or not CONSUMER.fullmatch(consumer):
        raise InvalidToken(f"the {rules.consumer_claim} claim is not a usable consumer name")
    return consumer


def _check_times(claims: dict[str, Any], now: float, skew: float) -> None:
    expires = _time(claims, "exp")
    if expires is None:
        raise InvalidToken("no exp claim")
    if now > expires + skew:
        raise InvalidToken("token expired")
    starts = _time(claims, "nbf")
    if starts is not None and now + skew < starts:
        raise InvalidToken("token not valid yet")


def _time(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} is not a time")
    return float(value)
