"""This node's mesh identity: a key made here, a certificate from the CA over NATS, renewed."""

from __future__ import annotations

import asyncio
import logging
import ssl

import msgspec
from cryptography import x509

from mesh import clock as system_clock
from mesh import subjects, tls
from mesh.bus import Bus, NatsBus
from mesh.clock import Clock
from mesh.errors import BusError, BusTimeout, BusUnavailable, CertificateError
from mesh.messages import CertReply, CertRequest
from mesh.metrics import Metrics
from mesh.security import pki
from mesh.security.renewal import renew_in
from mesh.tasks import cancel_and_wait
from mesh.tls import PeerCheck

log = logging.getLogger(__name__)

# After a failed renewal, try again this often (never past a tenth of what is left).
_RETRY_EVERY = 30.0
# Within one request's time, a CA that is not listening yet is asked again this often.
_ASK_AGAIN = 0.2


class Identity:
    """The certificate of one service's node, in two contexts that listeners and pools share.

    The key never leaves the process: the CA gets a signing request. Renewal loads the
    new certificate into the same contexts (new handshakes use it, open connections go on).
    """

    def __init__(
        self,
        bus: Bus,
        service: str,
        trust_domain: str,
        *,
        metrics: Metrics | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._bus = bus
        self.service = service
        self.trust_domain = trust_domain
        self.spiffe_id = pki.spiffe_id(trust_domain, service)
        self._clock = clock
        # Inbound: a caller must show a certificate of the mesh CA (TLS 1.2 and up).
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.minimum_version = ssl.TLSVersion.TLSv1_2
        self.server.verify_mode = ssl.CERT_REQUIRED
        # Outbound: the callee is checked by its SPIFFE id (see peer_check), not a host name.
        self.client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client.minimum_version = ssl.TLSVersion.TLSv1_2
        self.client.check_hostname = False
        self.client.verify_mode = ssl.CERT_REQUIRED
        self._ca = ""
        self.received = 0.0
        self.expires = 0.0
        self.renewals = {"ok": 0, "failed": 0}
        self._task: asyncio.Task[None] | None = None
        if metrics is not None:
            metrics.gauge(
                "mesh_certificate_expires_in_seconds",
                "Seconds until this node's mesh certificate expires.",
                (),
                lambda: [((), self.expires - self._clock.wall())],
            )
            metrics.counter(
                "mesh_certificate_renewals",
                "Certificate renewals by result.",
                ("result",),
                lambda: [((k,), float(v)) for k, v in self.renewals.items()],
            )

    async def first(self, bus: NatsBus, wait: float) -> None:
        """The node's first certificate, before it serves: NATS and the CA get `wait`
        seconds each; CertificateError naming the cause otherwise."""
        try:
            await bus.start(wait=wait)
        except BusUnavailable as exc:
            raise CertificateError(f"no certificate: {exc}") from None
        await self.obtain(timeout=wait)

    def peer_check(self, service: str) -> PeerCheck:
        return PeerCheck(self.client, pki.spiffe_id(self.trust_domain, service))

    async def obtain(self, timeout: float) -> None:
        """Ask the CA for a certificate for a new key and put it in use; CertificateError
        naming the cause when there is none."""
        key = pki.new_key()
        csr = pki.request(key, common_name=self.service, uris=[self.spiffe_id])
        subject = subjects.ca_sign(self.service)
        try:
            data = await self._ask(
                subject, msgspec.json.encode(CertRequest(csr=csr.decode())), timeout
            )
        except (BusUnavailable, BusTimeout) as exc:
            raise CertificateError(
                f"no mesh CA answered on {subject} ({exc}); is `mesh ca serve` running?"
            ) from None
        except BusError as exc:  # e.g. a permissions violation on that subject
            raise CertificateError(f"cannot ask the mesh CA on {subject}: {exc}") from None
        try:
            reply = msgspec.json.decode(data, type=CertReply)
        except msgspec.DecodeError as exc:
            raise CertificateError(f"the mesh CA's answer is unreadable: {exc}") from None
        if reply.error:
            raise CertificateError(f"the mesh CA refused: {reply.error}")
        self._use(reply, key)

    async def _ask(self, subject: str, data: bytes, timeout: float) -> bytes:
        """The CA's answer within `timeout`. Where no CA listens yet, or NATS is away for a
        moment, it is asked again: nodes and `mesh ca serve` often start together."""
        loop = asyncio.get_running_loop()  # not self._clock: a manual one would never move
        deadline = loop.time() + timeout
        while True:
            try:
                return await self._bus.request(subject, data, max(0.01, deadline - loop.time()))
            except BusUnavailable:
                if loop.time() + _ASK_AGAIN >= deadline:
                    raise
                await asyncio.sleep(_ASK_AGAIN)

    def _use(self, reply: CertReply, key: pki.PrivateKey) -> None:
        try:
            cert = x509.load_pem_x509_certificate(reply.cert.encode())
            if reply.ca != self._ca:  # trust the CA the certificate comes from (rotation: both)
                for context in (self.server, self.client):
                    context.load_verify_locations(cadata=reply.ca)
                self._ca = reply.ca
        except (ValueError, ssl.SSLError) as exc:
            raise CertificateError(f"the mesh CA's answer is unusable: {exc}") from None
        if self.spiffe_id not in pki.uris_of(cert) or cert.public_key() != key.public_key():
            raise CertificateError(f"the mesh CA's certificate is not {self.spiffe_id}'s")
        for context in (self.server, self.client):
            tls.load_chain_pem(context, reply.cert.encode(), pki.key_pem(key))
        self.received = self._clock.wall()
        self.expires = cert.not_valid_after_utc.timestamp()

    def start(self) -> None:
        """Renew in the background from now on."""
        self._task = asyncio.create_task(self._renew(), name="certificate-renewal")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _renew(self) -> None:
        delay = renew_in(self.received, self.expires, self._clock.wall())
        while True:
            await asyncio.sleep(delay)
            try:
                await self.obtain(timeout=5.0)
            except CertificateError as exc:
                self.renewals["failed"] += 1
                left = self.expires - self._clock.wall()
                delay = max(0.5, min(_RETRY_EVERY, left / 10))
                log.warning("certificate renewal failed (%.0f s left): %s", left, exc)
                continue
            self.renewals["ok"] += 1
            delay = renew_in(self.received, self.expires, self.received)
            left = self.expires - self.received
            log.info("certificate of %s renewed: valid %.0f s more", self.spiffe_id, left)
