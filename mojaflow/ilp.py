"""The ILP condition and fulfilment of a Mojaloop transfer: the payee's proof that the transfer completed.

The condition (from the quote) is base64url(SHA-256(fulfilment bytes)); the fulfilment is the 32-byte preimage
the payee's FSP reveals when it commits. Pure functions: the workflows call them directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["fulfilment_matches", "is_fulfilment_shaped"]


def _decode(value: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def is_fulfilment_shaped(fulfilment: str | None) -> bool:
    """A base64url string of exactly 32 bytes: all we can check when no condition was ever seen."""
    raw = _decode(fulfilment) if fulfilment else None
    return raw is not None and len(raw) == 32


def fulfilment_matches(fulfilment: str | None, condition: str | None) -> bool:
    """True only when SHA-256 of the decoded fulfilment is the decoded condition."""
    if not fulfilment or not condition:
        return False
    raw, expected = _decode(fulfilment), _decode(condition)
    if raw is None or expected is None or len(raw) != 32:
        return False
    return hmac.compare_digest(hashlib.sha256(raw).digest(), expected)
