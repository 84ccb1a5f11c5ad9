"""The access log's lines: no query strings, no credentials, written whole and only when flushed."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from factories import request_record

from mesh import clock
from mesh.engine import access_log
from mesh.engine.access_log import AccessLog
from mesh.errors import ConfigError
from mesh.messages import RequestRecord


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/a/b?api_key=secret&x=1", "/a/b"),
        (b"/?token=secret", "/"),
        (b"http://svc/p?password=secret", "http://svc/p"),
        (b"/plain", "/plain"),
    ],
)
def test_the_path_never_carries_the_query(target: bytes, path: str) -> None:
    assert access_log.path_of(target) == path


def test_a_line_has_no_field_for_headers_or_credentials() -> None:
    names = set(RequestRecord.__struct_fields__)
    for forbidden in ("headers", "authorization", "cookie", "credential", "query", "target"):
        assert not any(forbidden in name for name in names)


def test_lines_are_held_until_flushed_then_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.write(request_record(request_id="r1"))
    log.write(request_record(request_id="r2", consumer="alice"))
    assert path.read_bytes() == b""  # no system call per line
    log.flush()
    first, second = (msgspec.json.decode(each) for each in path.read_text().splitlines())
    assert (first["request_id"], first["bytes_in"], "consumer" in first) == ("r1", 0, False)
    assert (second["request_id"], second["consumer"]) == ("r2", "alice")


def test_a_full_buffer_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    count = access_log.FLUSH_BYTES // (len(msgspec.json.encode(request_record())) + 1) + 1
    for _ in range(count):
        log.write(request_record())
    assert path.read_text().count("\n") == count  # whole lines only


def test_an_existing_log_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("earlier\n")
    log = AccessLog(str(path))
    log.write(request_record())
    log.flush()
    assert path.read_text().splitlines()[0] == "earlier"
    assert len(path.read_text().splitlines()) == 2


def test_a_path_that_cannot_be_opened_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot open MESH_ACCESS_LOG .*No such file"):
        AccessLog(str(tmp_path / "missing" / "access.log"))


def test_the_time_is_rfc3339_utc_with_milliseconds(tmp_path: Path) -> None:
    stamp = AccessLog(str(tmp_path / "access.log")).timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)


def test_the_time_follows_the_clock_across_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AccessLog(str(tmp_path / "access.log"))
    stamps = []
    for now in (1764493200.1234, 1764493200.5, 1764493261.9996):
        monkeypatch.setattr(clock, "wall", lambda now=now: now)
        stamps.append(log.timestamp())
    assert stamps == [
        "2025-11-30T09:00:00.123Z",
        "2025-11-30T09:00:00.500Z",
        "2025-11-30T09:01:01.999Z",
    ]
