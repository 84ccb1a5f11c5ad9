"""mesh.config: MESH_ environment, CLI overrides, errors naming the variable, timing, host:port."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mesh import config
from mesh.addresses import redact_url
from mesh.cli import main
from mesh.errors import ConfigError
from mesh.timing import PRESETS, Timing


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MESH_ variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("MESH_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = config.load()
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert s.preset == "lan"
    assert s.timing == PRESETS["lan"]
    assert s.health_path == "/healthz"
    assert (s.gateway_listen, s.gateway_admin) == ("127.0.0.1:8000", "127.0.0.1:8001")
    assert s.agent_admin_port == 15000
    assert s.log_json is False


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        (
            "MESH_NATS_URL",
            "nats://n1:4222,nats://n2:4222",
            "nats_url",
            "nats://n1:4222,nats://n2:4222",
        ),
        ("MESH_PRESET", "wan", "preset", "wan"),
        ("MESH_HEARTBEAT_INTERVAL", "0.5", "heartbeat_interval", 0.5),
        ("MESH_GATEWAY_WORKERS", "4", "gateway_workers", 4),
        ("MESH_LOG_JSON", "true", "log_json", True),
        ("MESH_LOG_JSON", "0", "log_json", False),
        ("MESH_MAX_BODY_BYTES", "1048576", "max_body_bytes", 1048576),
        ("mesh_log_level", "debug", "log_level", "debug"),  # names are case-insensitive
    ],
)
def test_environment_with_prefix(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(config.load(), field) == expected


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    monkeypatch.setenv("PRESET", "wan")
    s = config.load()
    assert (s.nats_url, s.preset) == ("nats://127.0.0.1:4222", "lan")


def test_cli_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_PRESET", "wan")
    monkeypatch.setenv("MESH_CONNECT_TIMEOUT", "3")
    s = config.load(preset="local", connect_timeout=0.25)
    assert (s.preset, s.connect_timeout) == ("local", 0.25)


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI flag that was not given (None) leaves the environment's value, or the default."""
    monkeypatch.setenv("MESH_PRESET", "wan")
    s = config.load(preset=None, connect_timeout=None, nats_url=None)
    assert (s.preset, s.connect_timeout, s.nats_url) == ("wan", 1.0, "nats://127.0.0.1:4222")


def test_unknown_overrides_are_ignored() -> None:
    assert config.load(not_a_setting="x").preset == "lan"


INVALID_ENV: list[tuple[str, str]] = [
    ("MESH_CONNECT_TIMEOUT", "abc"),
    ("MESH_CONNECT_TIMEOUT", "0"),
    ("MESH_PRESET", "moon"),
    ("MESH_HEARTBEAT_INTERVAL", "61"),
    ("MESH_SUSPECT_INTERVALS", "0"),
    ("MESH_DOWN_INTERVALS", "1"),
    ("MESH_AGENT_ADMIN_PORT", "70000"),
    ("MESH_GATEWAY_WORKERS", "-1"),
    ("MESH_LOG_LEVEL", "loud"),
    ("MESH_LOG_JSON", "maybe"),
    ("MESH_HEALTH_PATH", "healthz"),
    ("MESH_MAX_HEADER_BYTES", "10"),
    ("MESH_GATEWAY_LISTEN", "nope"),
    ("MESH_GATEWAY_ADMIN", "host:99999"),
]


@pytest.mark.parametrize(("variable", "value"), INVALID_ENV)
def test_invalid_environment_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        config.load()
    assert str(caught.value).startswith(f"{variable}: ")


@pytest.mark.parametrize(("variable", "value"), INVALID_ENV)
def test_invalid_cli_values_name_the_variable(variable: str, value: str) -> None:
    field = variable.removeprefix("MESH_").lower()
    with pytest.raises(ConfigError) as caught:
        config.load(**{field: value})
    assert str(caught.value).startswith(f"{variable}: ")


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_PRESET", "moon")
    monkeypatch.setenv("MESH_GATEWAY_WORKERS", "-1")
    with pytest.raises(ConfigError) as caught:
        config.load()
    problems = str(caught.value).split("; ")
    assert sorted(p.split(":")[0] for p in problems) == ["MESH_GATEWAY_WORKERS", "MESH_PRESET"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, PRESETS["lan"]),
        ({"preset": "wan"}, PRESETS["wan"]),
        ({"preset": "local"}, PRESETS["local"]),
        ({"heartbeat_interval": 0.5}, Timing(0.5, 3, 6, 60.0)),
        ({"preset": "wan", "heartbeat_interval": 2}, Timing(2.0, 3, 6, 300.0)),
        ({"suspect_intervals": 2, "down_intervals": 4}, Timing(1.0, 2, 4, 60.0)),
        ({"down_intervals": 10}, Timing(1.0, 3, 10, 60.0)),
        ({"preset": "local", "forget_after": 5}, Timing(0.2, 3, 6, 5.0)),
        ({"arrival_grace": 0}, Timing(1.0, 3, 6, 60.0, arrival_grace=0.0)),
    ],
)
def test_timing_from_preset_and_overrides(overrides: dict[str, Any], expected: Timing) -> None:
    assert config.load(**overrides).timing == expected


def test_timing_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_PRESET", "wan")
    monkeypatch.setenv("MESH_SUSPECT_INTERVALS", "4")
    assert config.load(down_intervals=8).timing == Timing(5.0, 4, 8, 300.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"suspect_intervals": 6},  # down (6, from the preset) must exceed suspect
        {"down_intervals": 3},
        {"suspect_intervals": 5, "down_intervals": 4},
    ],
)
def test_down_must_exceed_suspect(overrides: dict[str, Any]) -> None:
    settings = config.load(**overrides)
    with pytest.raises(ConfigError, match="down_intervals must exceed suspect_intervals"):
        _ = settings.timing


@pytest.mark.parametrize(
    "overrides",
    [
        {"events_duplicate_window": 29},  # the grace is 30 s by default
        {"arrival_grace": 10, "events_max_age": 5},  # the stream's window is at most its age
    ],
)
def test_the_duplicate_window_must_cover_the_arrival_grace(overrides: dict[str, Any]) -> None:
    """Copies of one arrival are published up to the grace apart: a shorter window would
    store two."""
    with pytest.raises(ConfigError, match=r"^MESH_EVENTS_DUPLICATE_WINDOW: .*MESH_ARRIVAL_GRACE"):
        config.load(**overrides)
    assert config.load(events_duplicate_window=30).events_duplicate_window == 30


@pytest.mark.parametrize(
    ("alone", "pair"),
    [("nats_password", "nats_user"), ("nats_tls_key", "nats_tls_cert")],
)
def test_a_nats_secret_without_its_pair_is_refused_not_ignored(alone: str, pair: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(**{alone: "x"})
    assert str(caught.value) == f"MESH_{alone.upper()}: Value error, needs MESH_{pair.upper()} too"
    value = getattr(config.load(**{alone: "x", pair: "y"}), alone)
    assert (value if isinstance(value, str) else value.get_secret_value()) == "x"


SECRETS = {
    "MESH_NATS_USER": "operator",
    "MESH_NATS_PASSWORD": "hunter2-pass",
    "MESH_NATS_TOKEN": "t0ken-secret",
    "MESH_NATS_URL": "nats://operator:url-secret@127.0.0.1:4222,tls://tok-in-url@[::1]:4222",
}


def test_mesh_config_and_repr_never_show_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert main(["config"]) == 0
    shown = capsys.readouterr().out
    for secret in ("hunter2-pass", "t0ken-secret", "url-secret", "tok-in-url"):
        assert secret not in shown
    for secret in ("hunter2-pass", "t0ken-secret"):  # settings may be logged whole
        assert secret not in repr(config.load())
    assert "nats://***@127.0.0.1:4222,tls://***@[::1]:4222" in shown
    assert "MESH_NATS_USER                operator" in shown  # a name is not a secret
    settings = config.load()
    assert settings.nats_password is not None
    assert settings.nats_token is not None
    assert settings.nats_password.get_secret_value() == "hunter2-pass"
    assert settings.nats_token.get_secret_value() == "t0ken-secret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://u:p@h:1", "nats://***@h:1"),
        ("tls://tok@h:1, nats://h2:2", "tls://***@h:1,nats://h2:2"),
        ("h:4222", "h:4222"),  # no scheme: nothing that looks like credentials
        ("nats://u:se@cret@h:1", "nats://***@h:1"),  # '@' in the password
        ("nats://u:p/w@rd@h:1", "nats://***@h:1"),  # '/' and '@' in the password
        ("nats://tok@en@[::1]:1,nats://h:2", "nats://***@[::1]:1,nats://h:2"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


TLS = {"gateway_tls_cert": "g.crt", "gateway_tls_key": "g.key"}


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"gateway_listen_tls": ":8443"}, "MESH_GATEWAY_LISTEN_TLS: Value error, needs"),
        (TLS, "MESH_GATEWAY_LISTEN_TLS: Value error, must be set with MESH_GATEWAY_TLS_CERT"),
        ({"gateway_listen": ""}, "MESH_GATEWAY_LISTEN_TLS: Value error, must be set when"),
        ({"gateway_tls_key": "g.key"}, "MESH_GATEWAY_TLS_KEY: Value error, needs"),
        ({**TLS, "gateway_listen_tls": "h:t"}, "MESH_GATEWAY_LISTEN_TLS: Value error, 'h:t'"),
    ],
)
def test_https_settings_that_would_be_ignored_or_leave_no_listener_are_refused(
    given: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match="^" + problem):
        config.load(**given)


def test_https_beside_http_or_alone() -> None:
    both = config.load(gateway_listen_tls=":8443", **TLS)
    assert (both.gateway_listen, both.gateway_listen_tls) == ("127.0.0.1:8000", ":8443")
    alone = config.load(gateway_listen="", gateway_listen_tls=":8443", **TLS)
    assert alone.gateway_listen == ""


def test_the_admin_token_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_ADMIN_TOKEN", "s3cret-admin-token")
    settings = config.load()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret-admin-token"
    assert "s3cret" not in repr(settings) + str(settings.admin_token)


@pytest.mark.parametrize("token", ["", "short-s3cret"])
def test_an_admin_token_anyone_could_guess_is_refused_without_showing_it(token: str) -> None:
    with pytest.raises(ConfigError, match=r"^MESH_ADMIN_TOKEN: Value error, too short") as caught:
        config.load(admin_token=token)
    assert "s3cret" not in str(caught.value)
