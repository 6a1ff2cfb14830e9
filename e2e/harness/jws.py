"""JWS for the end-to-end stack: RSA keys and self-signed certificates made by the harness (never committed), and
the FSPIOP signature the switch front puts on its own callbacks.

    keys = make_keys(directory)                          # sdk/ and switch/ key pairs, and the SDK's trusted keys
    headers |= fspiop_signature(keys.switch_key, "PUT", "/transfers/abc", headers, body)

The Mojaloop signature (API Definition 1.1, "Signature"): `FSPIOP-Signature` is
`{"signature": ..., "protectedHeader": ...}`, an RS256 JWS over the protected header and the body as the
receiver re-serialises it (`JSON.stringify` of the parsed body: compact, in the order sent).
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["JwsKeys", "compact_json", "fspiop_signature", "make_keys"]


@dataclass(frozen=True)
class JwsKeys:
    directory: Path

    @property
    def sdk_key(self) -> Path:
        return self.directory / "sdk" / "private.pem"

    @property
    def sdk_cert(self) -> Path:
        return self.directory / "sdk" / "cert.pem"

    @property
    def switch_key(self) -> Path:
        """The switch's key: TTK (switch and peer DFSP) signs with it, and so does the switch front."""
        return self.directory / "switch" / "private.pem"

    @property
    def switch_cert(self) -> Path:
        return self.directory / "switch" / "cert.pem"

    @property
    def sdk_trusts(self) -> Path:
        """The SDK's JWS_VERIFICATION_KEYS_DIRECTORY: one `<fspId>.pem` public key per peer."""
        return self.directory / "sdk-trusts"


def make_keys(directory: Path) -> JwsKeys:
    keys = JwsKeys(directory)
    for who in ("sdk", "switch"):
        _key_pair(directory / who, who)
    keys.sdk_trusts.mkdir(parents=True, exist_ok=True)
    public = _public_pem(keys.switch_key)
    # TTK signs as the peer DFSP, and as "switch" (its PATCH notifications and our front's callbacks)
    for peer in ("testingtoolkitdfsp", "switch"):
        (keys.sdk_trusts / f"{peer}.pem").write_bytes(public)
    return keys


def compact_json(body: Any) -> bytes:
    """As JavaScript's `JSON.stringify` writes it (what the SDK signs and verifies against)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def fspiop_signature(key_path: Path, method: str, uri: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """The JWS headers for a request with these FSPIOP headers and this (compact JSON) body."""
    protected: dict[str, str] = {"alg": "RS256", "FSPIOP-URI": uri, "FSPIOP-HTTP-Method": method.upper()}
    for name in ("FSPIOP-Source", "FSPIOP-Destination", "Date"):
        if name in headers:
            protected[name] = headers[name]
    protected_b64 = _b64url(compact_json(protected))
    signing_input = f"{protected_b64}.{_b64url(body)}".encode()
    private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    value = json.dumps({"signature": _b64url(signature), "protectedHeader": protected_b64})
    return {"FSPIOP-URI": uri, "FSPIOP-HTTP-Method": method.upper(), "FSPIOP-Signature": value}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key_pair(directory: Path, name: str) -> None:
    if (directory / "cert.pem").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (directory / "private.pem").write_bytes(pem)
    (directory / "public.pem").write_bytes(_public_of(key))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _public_of(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _public_pem(private_path: Path) -> bytes:
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return _public_of(private)
