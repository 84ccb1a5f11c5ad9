"""deploy/ and docker-compose.yml: consistent with the CLI and each other; NATS configs valid."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import promql
import pytest
import yaml
from mesh_cli import mesh_command

from mesh.cli import parser
from mesh.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
NATS_DIR = ROOT / "deploy" / "nats"
# secure.conf needs generated credentials beside it: tested on its own below.
CONFIGS = sorted(p for p in NATS_DIR.glob("*.conf") if p.name != "secure.conf")
CLUSTER = sorted((NATS_DIR / "cluster").glob("*.conf"))  # one file per node

# Settings the configs take from the server's environment; dummies are enough for -t.
CONFIG_ENV = {
    "MESH_AGENT_PASSWORD": "agent-secret",
    "MESH_GATEWAY_PASSWORD": "gateway-secret",
    "MESH_ADMIN_PASSWORD": "admin-secret",
    "MESH_PRESENCE_PASSWORD": "presence-secret",
    "MESH_NATS_NODE": "mesh-nats-a",
}

# The `mesh` subcommands and the flags each takes (every command that talks to NATS
# also takes the common flags).
COMMON = {"--nats-url", "--preset", "--log-level"}
FLAGS: dict[str, set[str]] = {
    "agent": {
        "--service",
        "--port",
        "--host",
        "--health-path",
        "--weight",
        "--zone",
        "--version",
        "--meta",
        "--admin-port",
    },
    "gateway": {"--listen", "--admin", "--workers"},
    "demo-service": {"--service", "--port", "--host", "--instance-id"},
    "up": set(),
    "members": set(),
    "events": set(),
    "policy": set(),
}


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def mesh_services() -> dict[str, dict[str, Any]]:
    """Services that run the natsmesh image (entrypoint `mesh`)."""
    return {name: svc for name, svc in services().items() if "build" in svc}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# --- docker-compose.yml -------------------------------------------------------------------


def test_every_service_has_an_image_or_a_buildable_dockerfile() -> None:
    for name, svc in services().items():
        assert "image" in svc or "build" in svc, name
        build = svc.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_the_demo_layout_is_complete() -> None:
    names = set(services())
    assert {"nats", "gateway"} <= names
    for n in (1, 2, 3):
        assert {f"hello-{n}", f"hello-{n}-agent"} <= names
    assert services()["nats"]["image"].startswith("nats:2.")


@pytest.mark.parametrize("name", sorted(mesh_services()))
def test_mesh_commands_use_known_subcommands_and_flags(name: str) -> None:
    argv = command(mesh_services()[name])
    assert argv, f"{name}: no command"
    sub, args = argv[0], argv[1:]
    assert sub in FLAGS, f"{name}: unknown mesh subcommand {sub!r}"
    flags = {arg.split("=", 1)[0] for arg in args if arg.startswith("-")}
    unknown = flags - FLAGS[sub] - COMMON
    assert not unknown, f"{name}: mesh {sub} has no flags {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(mesh_services()))
def test_mesh_commands_parse_with_the_real_cli(name: str) -> None:
    argv = command(mesh_services()[name])
    try:
        args = parser(argv[0]).parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{name}: argparse rejected the command (exit {exc.code})")
    assert args.command == argv[0]


@pytest.mark.parametrize("name", sorted(mesh_services()))
def test_mesh_services_find_nats_by_its_service_name(name: str) -> None:
    url = urlsplit(environment(mesh_services()[name]).get("MESH_NATS_URL", ""))
    assert url.scheme == "nats"
    assert url.hostname in services(), f"{name}: {url.hostname} is not a compose service"
    assert services()[url.hostname]["image"].startswith("nats:")
    listen = re.search(r"^listen:\s*\S*:(\d+)", (NATS_DIR / "nats.conf").read_text(), re.M)
    assert listen is not None
    assert url.port == int(listen.group(1))


def test_each_agent_shares_its_services_network_and_announces_its_name() -> None:
    for name, svc in services().items():
        if not name.endswith("-agent"):
            continue
        target = name.removesuffix("-agent")
        assert svc["network_mode"] == f"service:{target}"
        argv = command(svc)
        announced = argv[argv.index("--host") + 1]
        port = argv[argv.index("--port") + 1]
        instance = command(services()[target])
        assert announced == target  # the compose DNS name the gateway dials
        assert instance[instance.index("--port") + 1] == port
        assert instance[instance.index("--host") + 1] == "0.0.0.0"  # reachable from outside
        assert "ports" not in svc  # not allowed with a shared network namespace


def test_mounted_files_exist_and_the_nats_config_is_mounted() -> None:
    volumes = set(compose().get("volumes") or {})
    for name, svc in services().items():
        for spec in svc.get("volumes", []):
            source = spec.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
            else:
                assert source in volumes, f"{name}: undeclared volume {source}"
    nats = services()["nats"]
    argv = command(nats)
    config = argv[argv.index("-c") + 1]
    assert any(spec.split(":")[1] == config for spec in nats["volumes"])


def test_depends_on_names_existing_services() -> None:
    for name, svc in services().items():
        for dep in svc.get("depends_on", []):
            assert dep in services(), f"{name} depends on unknown {dep}"


# --- deploy/Dockerfile --------------------------------------------------------------------


def test_dockerfile_installs_the_project_and_runs_mesh() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r'^ENTRYPOINT \["mesh"\]\s*$', text, re.M)
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY source {path} missing"


# --- deploy/nats/*.conf -------------------------------------------------------------------


def config_test(binary: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`nats-server -t`: parse and check a config without starting anything."""
    return subprocess.run(
        [binary, "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
        check=False,
    )


def test_the_expected_configs_are_there() -> None:
    assert {p.name for p in CONFIGS} >= {"nats.conf", "permissions.conf"}
    assert [p.name for p in CLUSTER] == ["node-a.conf", "node-b.conf", "node-c.conf"]


@pytest.mark.parametrize("config", CONFIGS + CLUSTER, ids=lambda p: p.name)
def test_nats_config_is_valid(nats_binary: str, config: Path) -> None:
    result = config_test(nats_binary, config, CONFIG_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["nats.conf", "cluster/node-a.conf"])
def test_enabling_the_permissions_include_stays_valid(
    nats_binary: str, tmp_path: Path, name: str
) -> None:
    text = (NATS_DIR / name).read_text()
    include = re.search(r"# (include \S*permissions.conf)", text)
    assert include is not None
    config = tmp_path / name  # beside a copy of deploy/nats: includes resolve as there
    config.parent.mkdir(exist_ok=True)
    shutil.copy(NATS_DIR / "permissions.conf", tmp_path)
    config.write_text(text.replace(include.group(0), include.group(1)))
    result = config_test(nats_binary, config, CONFIG_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_permissions_refuse_to_load_without_their_passwords(nats_binary: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.endswith("_PASSWORD")}
    result = subprocess.run(
        [nats_binary, "-t", "-c", str(NATS_DIR / "permissions.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "MESH_AGENT_PASSWORD" in result.stderr


def test_the_secure_config_is_valid_with_generated_credentials(
    nats_binary: str, tmp_path: Path
) -> None:
    """deploy/nats/README.md's steps: `mesh nats creds`, then secure.conf beside auth.conf."""
    out = tmp_path / "creds"
    ran = mesh_command("nats", "creds", "--out", str(out), "--service", "hello")
    assert ran.returncode == 0, ran.stderr
    shutil.copy(NATS_DIR / "secure.conf", out / "secure.conf")
    env = {
        "MESH_NATS_SERVER_CERT": str(out / "nats-server.pem"),
        "MESH_NATS_SERVER_KEY": str(out / "nats-server-key.pem"),
        "MESH_NATS_CA": str(out / "nats-ca.pem"),
    }
    result = config_test(nats_binary, out / "secure.conf", env)
    assert result.returncode == 0, result.stderr
    secrets = [p for p in out.iterdir() if p.name.endswith((".nk", "-key.pem"))]
    assert len(secrets) == 2 * 6 + 2  # six roles, and the server's and the CA's keys
    assert {p.stat().st_mode & 0o777 for p in secrets} == {0o600}


def test_the_cluster_nodes_share_a_cluster_and_routes_and_differ_in_name_and_store() -> None:
    texts = [path.read_text() for path in CLUSTER]
    routes = [re.findall(r"nats-route://([\d.]+):6222", text) for text in texts]
    assert len(set(routes[0])) == 3
    assert routes[1] == routes[2] == routes[0]
    assert {re.search(r"\n  name: (\S+)", text).group(1) for text in texts} == {"natsmesh"}  # type: ignore[union-attr]
    for unique in (r"\nserver_name: (\S+)", r"store_dir: (\S+)"):
        assert len({re.search(unique, text).group(1) for text in texts}) == 3  # type: ignore[union-attr]


# --- deploy/prometheus and deploy/grafana -------------------------------------------------

PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"


def test_the_prometheus_config_passes_promtool() -> None:
    checked = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_YML)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def scrape_targets() -> dict[str, set[str]]:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    return {
        job["job_name"]: {t for static in job["static_configs"] for t in static["targets"]}
        for job in config["scrape_configs"]
    }


def test_prometheus_scrapes_the_compose_gateway_and_every_agent_on_their_admin_ports() -> None:
    argv = command(services()["gateway"])
    admin_port = argv[argv.index("--admin") + 1].rsplit(":", 1)[1]
    agents = [name.removesuffix("-agent") for name in services() if name.endswith("-agent")]
    agent_port = Settings.model_fields["agent_admin_port"].default
    assert scrape_targets() == {
        "gateway": {f"gateway:{admin_port}"},
        # An agent shares its service's network namespace: reached by the service's name,
        # on the default agent admin port, which must listen off loopback.
        "agent": {f"{target}:{agent_port}" for target in agents},
    }
    for name in agents:
        assert environment(services()[f"{name}-agent"])["MESH_AGENT_ADMIN_HOST"] == "0.0.0.0"


def test_the_monitoring_services_run_only_with_their_profile_and_mount_the_deploy_files() -> None:
    prometheus, grafana = services()["prometheus"], services()["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    assert (
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in prometheus["volumes"]
    )
    mounts = dict(spec.split(":")[:2] for spec in grafana["volumes"])
    # Grafana finds the data source and the dashboard where compose puts them.
    provisioning = GRAFANA_DIR / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "natsmesh.yml").read_text())[
        "providers"
    ]
    assert Path(mounts["./deploy/grafana/natsmesh.json"]).parent == Path(
        provider["options"]["path"]
    )
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    published = prometheus["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{published}"


def test_the_dashboard_asks_its_datasource_variable_for_mesh_metrics_only() -> None:
    board = promql.dashboard()
    assert board["uid"] == "natsmesh"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    for expr in promql.exprs(board):
        names = promql.metric_names(expr)
        assert names, expr
        assert all(name.startswith("mesh_") for name in names), expr


def test_metric_names_are_found_among_functions_labels_and_ranges() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (service, le) (rate(mesh_a_bucket{job=~"$job",'
        ' code!~"5.."}[$__rate_interval]))) / on (service) group_left sum without (worker)'
        " (mesh_b) > bool 0 or mesh_c offset 5m"
    )
    assert promql.metric_names(expr) == {"mesh_a_bucket", "mesh_b", "mesh_c"}
