"""The payload codec: every Temporal payload (inputs, results, update and query arguments, failure
messages and stack traces) is encrypted with AES-256-GCM before it leaves the process.

Personal data (names, party ids, accounts) therefore reaches Temporal's history only encrypted; the Web UI
shows it through our codec endpoint (`api.codec_server`), and nowhere else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from mojaflow.keys import load_key
from mojaflow.settings import Settings

__all__ = ["EncryptionCodec", "data_converter", "load_payload_key"]

ENCODING = b"binary/encrypted"
_NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    """AES-GCM over the whole serialized payload; the key id is recorded so keys can be rotated."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the payload key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:16].encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING, "encryption-key-id": self.key_id},
                data=self._encrypt(payload.SerializeToString()),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            if payload.metadata.get("encryption-key-id") != self.key_id:
                raise ValueError("payload was encrypted with another key")
            decoded.append(Payload.FromString(self._decrypt(payload.data)))
        return decoded

    def _encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, None)

    def _decrypt(self, data: bytes) -> bytes:
        return self._aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], None)


def load_payload_key(settings: Settings) -> bytes:
    """The key from `MOJAFLOW_PAYLOAD_KEY`, else from the data dir, generated there on first use."""
    return load_key(settings.payload_key, settings.data_dir / "payload.key", name="MOJAFLOW_PAYLOAD_KEY")


def data_converter(key: bytes) -> DataConverter:
    """Pydantic payloads, encrypted, with failure messages and stack traces encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(key),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
