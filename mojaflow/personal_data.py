"""Personal data at rest: the names, party ids and accounts in our database are sealed with the secrets ring.

A stored document (a transfer's resource, an inbound quote) keeps its personal fields in one field, `sealed`:
`{"keyId": ..., "data": base64(nonce + AES-256-GCM ciphertext)}`, under the ring's first key and bound to the row
(the transfer or quote id is the associated data, so a sealed blob moved to another row does not open). Amounts,
states, ids and FSP ids stay in clear for reconciliation and listing. Without a ring nothing personal is stored.

    sealer = Sealer(load_secrets_ring(settings))
    stored = seal_transfer(view.model_dump(mode="json", by_alias=True), sealer)
    resource = unseal_transfer(stored, sealer)   # as it was; raises UnknownKeyError for a key id not in the ring
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mojaflow.keys import KeyRing

__all__ = [
    "SEALED",
    "Sealer",
    "seal_quote",
    "seal_transfer",
    "sealed_key_id",
    "unseal_quote",
    "unseal_transfer",
]

SEALED = "sealed"
_PARTIES = ("payer", "payee")
_CLEAR_PARTY_FIELDS = frozenset({"fspId"})  # a DFSP's id: not personal; everything else of a party is
_QUOTE_PERSONAL = ("account_id", "payee_name")
_NONCE_BYTES = 12


class Sealer:
    """AES-256-GCM under a ring: seals with its first key, opens with the key its id names."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def seal(self, fields: dict[str, Any], *, context: str) -> dict[str, str]:
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(fields, separators=(",", ":")).encode()
        data = nonce + AESGCM(self.ring.primary).encrypt(nonce, plain, context.encode())
        return {"keyId": self.ring.primary_id, "data": base64.b64encode(data).decode()}

    def open(self, sealed: dict[str, Any], *, context: str) -> dict[str, Any]:
        """Raises `UnknownKeyError` (the key id and setting named) or ValueError when it does not authenticate."""
        key_id = str(sealed.get("keyId", ""))
        key = self.ring.require(key_id, "personal data in the database")
        data = base64.b64decode(str(sealed.get("data", "")))
        try:
            plain = AESGCM(key).decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise ValueError(f"sealed personal data of {context} does not open under key id {key_id!r}") from None
        fields: dict[str, Any] = json.loads(plain)
        return fields


def sealed_key_id(document: dict[str, Any]) -> str | None:
    sealed = document.get(SEALED)
    return str(sealed.get("keyId")) if isinstance(sealed, dict) else None


# -- transfers: TransferView as stored (camelCase) ------------------------------------------------------


def seal_transfer(resource: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    """The resource to store: the parties' personal fields sealed (dropped without a sealer)."""
    stored = dict(resource)
    personal: dict[str, Any] = {}
    for role in _PARTIES:
        party = stored.get(role)
        if not isinstance(party, dict):
            continue
        secret = {name: value for name, value in party.items() if name not in _CLEAR_PARTY_FIELDS and value}
        if secret:
            personal[role] = secret
        stored[role] = {name: value for name, value in party.items() if name in _CLEAR_PARTY_FIELDS}
    if personal and sealer is not None:
        stored[SEALED] = sealer.seal(personal, context=f"transfer:{resource['transferId']}")
    return stored


def unseal_transfer(stored: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    """The resource as it was saved (without a sealer, or after the retention purge: without personal fields)."""
    resource = dict(stored)
    sealed = resource.pop(SEALED, None)
    if sealed is None or sealer is None:
        return resource
    for role, fields in sealer.open(sealed, context=f"transfer:{resource['transferId']}").items():
        resource[role] = {**(resource.get(role) or {}), **fields}
    return resource


# -- inbound quotes: InboundQuote as stored (snake_case) ----------------------------------------------


def seal_quote(quote_id: str, quote: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    stored = {name: value for name, value in quote.items() if name not in _QUOTE_PERSONAL}
    personal = {name: quote[name] for name in _QUOTE_PERSONAL if quote.get(name) is not None}
    if personal and sealer is not None:
        stored[SEALED] = sealer.seal(personal, context=f"quote:{quote_id}")
    return stored


def unseal_quote(quote_id: str, stored: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    quote = dict(stored)
    sealed = quote.pop(SEALED, None)
    if sealed is not None and sealer is not None:
        quote.update(sealer.open(sealed, context=f"quote:{quote_id}"))
    return quote
