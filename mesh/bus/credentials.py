"""What a NATS connection logs in with, from the settings, and what NATS's refusals mean."""

from __future__ import annotations

import re
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import nats.errors

from mesh import clock
from mesh import tls as mesh_tls
from mesh.config import Settings
from mesh.errors import ConfigError

# nats-py's text for a publish the server's permissions refused (the server says no more;
# nats-py lowers its case, subject included).
REFUSED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)
# OpenSSL's reasons when our TLS hello meets a server that writes plain text (its INFO).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def connect_credentials(s: Settings) -> dict[str, Any]:
    """nats-py's connect options for every credential the settings hold, files checked."""
    options: dict[str, Any] = {} if s.nats_user or s.nats_token else url_login(s.nats_url)
    if s.nats_user:
        options["user"] = s.nats_user
        options["password"] = s.nats_password.get_secret_value() if s.nats_password else ""
    if s.nats_token:
        options["token"] = s.nats_token.get_secret_value()
    for setting, option in (("nats_nkey_seed", "nkeys_seed"), ("nats_creds", "user_credentials")):
        path = getattr(s, setting)
        if path:
            try:  # nats-py reads it at each connect: a bad path must fail at start
                with open(path, "rb"):
                    pass
            except OSError as exc:
                message = f"MESH_{setting.upper()}: cannot read {path}: {exc.strerror}"
                raise ConfigError(message) from None
            options[option] = path
    if s.nats_tls_ca or s.nats_tls_cert:
        if s.nats_tls_cert:
            mesh_tls.check_current(s.nats_tls_cert, clock.wall(), "MESH_NATS_TLS_CERT")
        options["tls"] = mesh_tls.client_context(
            s.nats_tls_ca, cert=s.nats_tls_cert, key=s.nats_tls_key
        )
    if "tls" in options or _tls_url(s):
        # TLS before the server's first word: otherwise nats-py upgrades only when the
        # server's INFO asks, and a server (or a man in the middle) that does not ask
        # would read the credentials in clear. Servers need `handshake_first: true`.
        options["tls_handshake_first"] = True
    return options


def url_login(urls: str) -> dict[str, str]:
    """The login the URLs carry (`user:password@`, `token@`), as options for every server.

    nats-py logs in to a server with the credentials of its own URL: a server it learned
    from the cluster (none in MESH_NATS_URL) has none there, and would refuse it. Given as
    options, they serve whichever node the client moves to.
    """
    logins = {
        (unquote(url.username), None if url.password is None else unquote(url.password))
        for url in map(urlsplit, (u.strip() for u in urls.split(",") if u.strip()))
        if url.username is not None
    }
    if len(logins) > 1:
        raise ConfigError(
            "MESH_NATS_URL: its URLs log in differently; a cluster takes one login "
            "(or set MESH_NATS_USER and _PASSWORD, or _TOKEN)"
        )
    if not logins:
        return {}
    user, password = logins.pop()
    return {"token": user} if password is None else {"user": user, "password": password}


def guarded(s: Settings) -> bool:
    """Whether these settings log in over TLS: a sign (not proof) that the server lets
    no one in without credentials of their own."""
    logs_in = s.nats_user or s.nats_token or s.nats_nkey_seed or s.nats_creds or "@" in s.nats_url
    return bool(logs_in and (s.nats_tls_ca or s.nats_tls_cert or _tls_url(s)))


def _tls_url(s: Settings) -> bool:
    return any(url.strip().lower().startswith("tls://") for url in s.nats_url.split(","))


def refusal(exc: BaseException) -> str | None:
    """Why NATS refused us, if `exc` says so: retrying with the same settings cannot help."""
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
        return (
            "NATS refused the credentials (authorization violation): check MESH_NATS_USER "
            "and _PASSWORD, _TOKEN, _NKEY_SEED or _CREDS"
        )
    # Built by hand (tests), ssl's errors lack the attributes the ssl module sets.
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc
        return f"the NATS server's certificate is not trusted ({why}): check MESH_NATS_TLS_CA"
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "reason", None) or exc
        if why in _NOT_TLS:
            return (
                f"the NATS server did not answer in TLS ({why}): the mesh speaks TLS first, "
                "so the server's tls block needs `handshake_first: true`"
            )
        return (
            f"NATS refused the TLS handshake ({why}): check MESH_NATS_TLS_CERT and _KEY "
            "(a certificate its CA signed, not expired)"
        )
    return None
