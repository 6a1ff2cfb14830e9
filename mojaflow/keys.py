"""Our 32-byte keys: from a setting (base64), else from a file in the data dir, generated there on first use.

The data-dir fallback is `make run`'s development default: a deployment of several processes must set the keys,
or each process would generate its own.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from pydantic import SecretStr

from mojaflow.settings import Settings

__all__ = ["KEY_BYTES", "load_key", "load_party_hash_key"]

KEY_BYTES = 32


def load_key(setting: SecretStr | None, path: Path, *, name: str) -> bytes:
    """The key given by `setting`, else the one in `path` (created 0600 with a random key if missing).
    Raises ValueError naming `name` (the setting) when the key is not base64 of 32 bytes."""
    if setting is not None:
        encoded = setting.get_secret_value()
    else:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of ours made it first
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode())
        encoded = path.read_text().strip()
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{name} must be base64 of {KEY_BYTES} random bytes")
    return key


def load_party_hash_key(settings: Settings) -> bytes:
    """The HMAC key of `party_key`: `MOJAFLOW_PARTY_HASH_KEY`, else `party-hash.key` in the data dir."""
    return load_key(settings.party_hash_key, settings.data_dir / "party-hash.key", name="MOJAFLOW_PARTY_HASH_KEY")
