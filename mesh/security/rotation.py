"""A listener's certificate, reloaded in place when its files change; a bad one is refused."""

from __future__ import annotations

import logging
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mesh.errors import ConfigError
from mesh.metrics import Metrics
from mesh.tls import load_chain

log = logging.getLogger(__name__)

# Changes closer together than this are one change: a certificate and its key are
# written one after the other, and a pair caught half-written would be refused.
_DEBOUNCE_MS = 300


class CertificateReloader:
    """Keeps `context`'s certificate in step with the `cert` and `key` files.

    New handshakes see a new certificate; open connections go on with theirs. A pair
    that does not load (unreadable, not PEM, key not matching) leaves the old one in
    place, is logged and counted (`mesh_tls_reloads_total{result="failed"}`).
    """

    def __init__(self, context: ssl.SSLContext, cert: str, key: str, metrics: Metrics) -> None:
        self.context = context
        self.cert = Path(cert)
        self.key = Path(key)
        self.results = {"loaded": 0, "failed": 0}
        # Loaded again from the very bytes remembered: files changed since the context
        # was made would otherwise look unchanged to the first reload.
        self._loaded = self._read()
        if self._loaded is None:
            raise ConfigError(f"TLS certificate {self.cert} or key {self.key} unreadable")
        self._swap(*self._loaded)
        metrics.counter(
            "mesh_tls_reloads",
            "Certificate reloads after its files changed, by result (failed: old one kept).",
            ("result",),
            lambda: [((result,), float(n)) for result, n in self.results.items()],
        )

    def _read(self) -> tuple[bytes, bytes] | None:
        """Both files' bytes; None when either cannot be read."""
        try:
            return self.cert.read_bytes(), self.key.read_bytes()
        except OSError:
            return None

    def reload(self) -> bool:
        """Load the files if they changed; False when they changed but cannot be used."""
        pair = self._read()
        if pair is not None and pair == self._loaded:
            return True  # a change beside them (another file in the folder)
        try:
            if pair is None:
                raise ConfigError(f"TLS certificate {self.cert} or key {self.key} unreadable")
            self._swap(*pair)
        except ConfigError as exc:
            self.results["failed"] += 1
            log.error("new TLS certificate refused, the current one stays: %s", exc)
            return False
        self._loaded = pair
        self.results["loaded"] += 1
        log.info("TLS certificate reloaded from %s", self.cert)
        return True

    def _swap(self, cert: bytes, key: bytes) -> None:
        # From copies of the bytes just compared: load_chain reads its files twice (a
        # trial, then the live context), and a file rewritten in between must not slip
        # through untried.
        with tempfile.TemporaryDirectory(prefix="mesh-tls-") as folder:
            cert_copy, key_copy = Path(folder, "cert.pem"), Path(folder, "key.pem")
            cert_copy.write_bytes(cert)
            key_copy.touch(mode=0o600)
            key_copy.write_bytes(key)
            load_chain(self.context, str(cert_copy), str(key_copy))

    async def watch(self) -> None:
        """Reload on every change in the files' folders, until cancelled.

        Folders, not files: a file replaced by a rename (or a Kubernetes secret's
        symlink swap) is a new file that a watch on the old one would never see.
        """
        from watchfiles import awatch

        try:
            async for _ in awatch(*_folders((self.cert, self.key)), debounce=_DEBOUNCE_MS):
                self.reload()  # on the loop: handshakes use the context meanwhile
        except OSError as exc:  # the folder went away, or the system's watch limit
            log.error("TLS certificate no longer watched, a new one needs a restart: %s", exc)


def _folders(paths: Iterable[Path]) -> list[Path]:
    return sorted({path.absolute().parent for path in paths})
