"""The payload codec: every Temporal payload (inputs, results, update and query arguments, failure
messages and stack traces) is encrypted with AES-256-GCM before it leaves the process.

Personal data (names, party ids, accounts) therefore reaches Temporal's history only encrypted; the Web UI
shows it through our codec endpoint (`api.codec_server`), and nowhere else.

Keys form a ring (`MOJAFLOW_PAYLOAD_KEYS`, mojaflow/keys.py): each payload records the id of the key that
encrypted it (`encryption-key-id`), new payloads use the ring's first key, and a payload of a key id the ring does
not hold is refused with `UnknownKeyError`, never decoded with another key. A one-key ring of `MOJAFLOW_PAYLOAD_KEY`
derives its key id as earlier versions did, so their histories still decode.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from mojaflow.keys import KeyRing, UnknownKeyError, load_payload_ring

__all__ = ["EncryptionCodec", "PayloadDecryptError", "UnknownKeyError", "data_converter", "load_payload_ring"]

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12


class PayloadDecryptError(ValueError):
    """An encrypted payload that does not authenticate under the key of its id: altered, or another key was
    given that id. Never decoded."""


class EncryptionCodec(PayloadCodec):
    """AES-GCM over the whole serialized payload, under the ring's first key; the key id is recorded, so any key
    of the ring decodes what it encrypted. `keys`: a ring, or one key (its id derived)."""

    def __init__(self, keys: KeyRing | bytes) -> None:
        self.ring = keys if isinstance(keys, KeyRing) else KeyRing.single(keys, setting="MOJAFLOW_PAYLOAD_KEYS")
        self.key_id = self.ring.primary_id.encode()
        self._encryptor = AESGCM(self.ring.primary)
        self._decryptors: dict[str, AESGCM] = {}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING, KEY_ID: self.key_id},
                data=self._encrypt(payload.SerializeToString()),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Raises `UnknownKeyError` (names the key id and the setting) or `PayloadDecryptError`."""
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
            decoded.append(Payload.FromString(self._decrypt(key_id, payload.data)))
        return decoded

    def _encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._encryptor.encrypt(nonce, data, None)

    def _decrypt(self, key_id: str, data: bytes) -> bytes:
        aead = self._decryptors.get(key_id)
        if aead is None:
            aead = self._decryptors[key_id] = AESGCM(self.ring.require(key_id, "a payload"))
        try:
            return aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], None)
        except InvalidTag:
            raise PayloadDecryptError(
                f"a payload does not authenticate under key id {key_id!r} of {self.ring.origin}: it was altered, "
                "or that id names another key there"
            ) from None


def data_converter(keys: KeyRing | bytes) -> DataConverter:
    """Pydantic payloads, encrypted, with failure messages and stack traces encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
