"""The proxy's own answers in HAProxy's words: the engine's statuses, flags and JSON bodies."""

from __future__ import annotations

import json

from mesh.haproxy.words import quote

# `http-error` statuses HAProxy makes itself -> (the engine's error class, x-mesh-flags,
# detail). HAProxy answers 503 both when no server is usable and when every connection
# attempt failed: the first is answered earlier by `no_server` (UH), so 503 here means the
# attempts failed, which the engine answers with 502 UF (`after_response` sets that status).
SERVER_ERRORS = {
    502: ("UpstreamReset", "UC", "upstream closed or answered badly"),
    503: ("UpstreamConnectFailure", "UF", "connect failed"),
    504: ("UpstreamTimeout", "UT", "no response in time"),
}
CLIENT_ERRORS = {
    400: ("BadRequest", "DPE", "malformed request"),
    408: ("ClientTimeout", "DT", "request head not received in time"),
}


def text(value: str) -> str:
    """Literal text inside a JSON string of a log-format: JSON-escaped, `%` doubled."""
    return json.dumps(value)[1:-1].replace("%", "%%")


def body(error: str, flags: str, detail: str, service: str = "", instance: str = "") -> str:
    """The engine's JSON error body (mesh.engine.replies.Body) as an HAProxy log-format;
    `detail` and `instance` are log-formats already (see `text`)."""
    fields = [f'"error":"{error}"', f'"flags":"{flags}"', f'"detail":"{detail}"']
    if service:
        fields.append(f'"service":"{text(service)}"')
    if instance:
        fields.append(f'"instance":"{instance}"')
    fields.append('"request_id":"%[unique-id,json(ascii)]"')
    return "{" + ",".join(fields) + "}"


def reply(flags: str, lf_body: str) -> str:
    """The arguments of `http-request return` / `http-error` after the status."""
    return (
        f"content-type application/json lf-string {quote(lf_body)} "
        f"hdr x-mesh-flags {flags} hdr x-request-id %[unique-id]"
    )


def http_errors(errors: dict[int, tuple[str, str, str]], service: str = "") -> list[str]:
    """`http-error` lines for HAProxy's own errors, in the section they apply to."""
    lines = []
    for status, (error, flags, detail) in errors.items():
        lf_body = body(error, flags, detail, service, "%s" if service else "")
        lines.append(f"http-error status {status} {reply(flags, lf_body)}")
    return lines


# A 503 of the connect-failure reply above leaves as the engine's 502 UF.
AFTER_RESPONSE = "http-after-response set-status 502 if { status 503 } { res.hdr(x-mesh-flags) UF }"
