"""Listen addresses as people write them (`host:port`, `:port`, `[::1]:port`), and binding one."""

from __future__ import annotations

import re
import socket

from mesh.errors import ConfigError


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'host:port', ':port' or 'port' -> (host, port); IPv6 hosts in brackets."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif any(c in host for c in "[]:"):  # '::1', 'h:80:90', '[::1:80' are not host:port
        raise ConfigError(f"{value!r} is not host:port (IPv6 hosts go in brackets: [::1]:80)")
    host = host or default_host
    if not (port_text.isascii() and port_text.isdigit()):  # int() also takes ' 8_0', '+80'
        raise ConfigError(f"{value!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{value!r}: port must be 0-65535")
    return host, port


def hostport(host: str, port: int) -> str:
    """`host:port` as people write it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redact_url(urls: str) -> str:
    """`urls` (comma-separated) with any `user:password@` or `token@` shown as `***@`."""
    # Up to the last '@': a secret may hold '@' or '/' unescaped (a server URL has no path).
    return ",".join(
        re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://).*@", r"\1***@", url.strip())
        for url in urls.split(",")
    )


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0 = any free port) but not listening: connections are
    refused until it serves, while nobody else can take the port meanwhile."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As the servers bind: a closed connection in TIME_WAIT is no obstacle. Without
        # SO_REUSEPORT, any listener already there counts as taken, even one that set it;
        # and none of ours sets it, so no stranger can join one of our ports either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
