"""A TLS-terminating loopback proxy in front of the Temporal dev server's plaintext gRPC port.

The dev server has no TLS, so a real cluster's or Temporal Cloud's front door is stood in for by this proxy:

    certs = make_certificates(tmp_path)                # a CA, a server cert (127.0.0.1 / localhost), a client cert
    with TlsProxy("127.0.0.1:7233", certs, require_client_cert=True) as proxy:
        ...                                           # point MOJAFLOW_TEMPORAL_ADDRESS at proxy.address
        proxy.peer_subjects                           # the client certificates' subjects it saw
        proxy.authorizations                          # the `authorization` header of each connection's first stream
        proxy.refused                                 # why each refused handshake failed (plaintext, no client cert)

It runs its own event loop in a thread, so it keeps serving while the test's loop blocks (e.g. while
`ServerProcess.start` polls a child healthy). Bytes are forwarded unchanged both ways; an `h2` connection only
observes the client's bytes until it has read the first request's headers, and what it would send is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CLIENT_SUBJECT", "Certificates", "TlsProxy", "make_certificates"]

CLIENT_SUBJECT = "CN=mojaflow-test-client,O=mojaflow tests"
_CHUNK = 65536


@dataclass(frozen=True)
class Certificates:
    """PEM files: our CA, the proxy's server pair and the client pair it signed, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # signed nothing here: a client trusting only it must refuse the proxy


def make_certificates(directory: Path) -> Certificates:
    """Generate the certificates into `directory` (EC P-256, valid for a day, SANs 127.0.0.1 and localhost)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("mojaflow test CA")
    _, other_ca_cert = _ca("some other CA")
    server_key, server_cert = _leaf(
        ca_key,
        ca_cert,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key, client_cert = _leaf(
        ca_key,
        ca_cert,
        x509.Name.from_rfc4514_string(CLIENT_SUBJECT),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        san=[x509.DNSName("mojaflow-test-client")],
    )
    paths = Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_ca=directory / "other-ca.pem",
    )
    for path, cert in (
        (paths.ca, ca_cert),
        (paths.server_cert, server_cert),
        (paths.client_cert, client_cert),
        (paths.other_ca, other_ca_cert),
    ):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for path, key in ((paths.server_key, server_key), (paths.client_key, client_key)):
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    return paths


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, builder.sign(key, hashes.SHA256())


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    *,
    san: Iterable[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    return key, builder.sign(ca_key, hashes.SHA256())


class _FirstRequestHeaders:
    """An h2 server connection fed the client's bytes only, until it has seen the first request's headers."""

    def __init__(self) -> None:
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8", validate_inbound_headers=False)
        )
        self._h2.initiate_connection()
        self.done = False

    def feed(self, data: bytes) -> dict[str, str] | None:
        """The first request's headers once they are complete, else None. Never raises: observing is best effort,
        and after the first request (or a protocol surprise) it stops, so flow control never comes into play."""
        if self.done:
            return None
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.done = True
            return None
        self._h2.data_to_send()  # dropped: the real server answers
        for event in events:
            if isinstance(event, h2.events.RequestReceived) and event.headers is not None:
                self.done = True
                return {str(name): str(value) for name, value in event.headers}
        return None


class TlsProxy:
    """TLS (ALPN h2) on `address`, forwarding to the plaintext `upstream` ("host:port"); see the module doc."""

    def __init__(self, upstream: str, certs: Certificates, *, require_client_cert: bool = False) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self.port = 0  # the OS picks it when the proxy starts: no window for another process to take it
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(certs.server_cert, certs.server_key)
        self._context.set_alpn_protocols(["h2"])
        if require_client_cert:
            self._context.verify_mode = ssl.CERT_REQUIRED
            self._context.load_verify_locations(certs.ca)
        # What it saw, appended from the proxy's thread (list.append is atomic), read by the test.
        self.peer_subjects: list[str] = []
        self.authorizations: list[str] = []
        self.refused: list[str] = []  # why each failed handshake failed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        """`host:port` for MOJAFLOW_TEMPORAL_ADDRESS, once started."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> TlsProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Close the listener and every connection it holds, then end the thread."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._open):  # each pump then reads its end of stream and returns
                writer.transport.abort()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            try:
                await writer.start_tls(self._context)
            except (ssl.SSLError, ConnectionError, OSError) as error:
                self.refused.append(f"{type(error).__name__}: {error}")
                writer.transport.abort()
                return
            peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            if peer:
                self.peer_subjects.append(x509.load_der_x509_certificate(peer).subject.rfc4514_string())
            try:
                up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                writer.transport.abort()
                return
            self._open.add(up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, _FirstRequestHeaders()),
                self._pump(up_reader, writer, None),
                return_exceptions=True,
            )
            self._open.discard(up_writer)
        finally:
            self._open.discard(writer)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observer: _FirstRequestHeaders | None
    ) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if observer is not None and (headers := observer.feed(data)) is not None:
                    self.authorizations.append(headers.get("authorization", ""))
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
