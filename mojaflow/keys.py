"""Our key rings: payload codec keys, secrets-at-rest keys and party-hash keys, 32 random bytes each.

A ring is `id:base64,id:base64`: the first key encrypts (or hashes), every key decrypts (or matches), so a
rotation puts a new key first and keeps the old ones for what they already sealed. An entry without `id:` (an
earlier version's one key) gets the id `sha256(key)[:16]`, the one those versions recorded. A ring comes from its
setting (`MOJAFLOW_PAYLOAD_KEYS`, ...; earlier versions' one-key settings stay as aliases), else from a file in the
data dir (one entry per line), generated 0600 on first use: `make run`'s development default. A deployment of
several processes must set the rings, or each machine would generate its own.

Messages never carry key material: only key ids, setting names and file paths.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from mojaflow.settings import Settings

__all__ = [
    "KEY_BYTES",
    "KeyRing",
    "RingSpec",
    "UnknownKeyError",
    "derived_key_id",
    "load_party_hash_ring",
    "load_payload_ring",
    "load_ring",
    "load_secrets_ring",
    "prepend_new_key",
    "ring_spec",
]

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UnknownKeyError(ValueError):
    """Data sealed under a key id the ring does not hold: never decoded with another key."""

    def __init__(self, what: str, key_id: str, ring: KeyRing) -> None:
        self.key_id = key_id
        self.setting = ring.setting
        held = ", ".join(ring.ids)
        super().__init__(
            f"{what} was encrypted with key id {key_id!r}, which is not in {ring.origin} (it holds {held}): "
            f"add that key to {ring.setting}"
        )


def derived_key_id(key: bytes) -> str:
    """The id of a key given without one (the one-key settings, earlier versions' key files)."""
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, repr=False)
class KeyRing:
    """Keys by id, in order: the first is the one to encrypt with. Its repr shows ids only."""

    setting: str  # the setting that sets this ring, named in every error
    entries: tuple[tuple[str, bytes], ...]
    path: Path | None = None  # the data-dir file it was read from; None when given by a setting
    alias: str | None = None  # the one-key setting it was given by instead, if so
    # keys found in the file after we read it (a rotation while we run), kept so it is read once per new key
    _later: dict[str, bytes] = field(default_factory=dict, compare=False)

    @classmethod
    def single(cls, key: bytes, *, setting: str, alias: str | None = None) -> KeyRing:
        _check_key(key, alias or setting)
        return cls(setting, ((derived_key_id(key), key),), alias=alias)

    @property
    def primary_id(self) -> str:
        return self.entries[0][0]

    @property
    def primary(self) -> bytes:
        return self.entries[0][1]

    @property
    def ids(self) -> list[str]:
        return [key_id for key_id, _ in self.entries]

    @property
    def keys(self) -> list[bytes]:
        return [key for _, key in self.entries]

    @property
    def origin(self) -> str:
        """Where this ring came from, for messages."""
        if self.path is not None:
            return f"{self.setting} (unset: the ring in {self.path})"
        return f"{self.alias} (the one-key form of {self.setting})" if self.alias else self.setting

    def get(self, key_id: str) -> bytes | None:
        return next((key for known, key in self.entries if known == key_id), None) or self._later.get(key_id)

    def require(self, key_id: str, what: str) -> bytes:
        """The key of `key_id`; from a data-dir ring, the file is read again for an id we do not know (a rotation
        while we run: the new first key decrypts here before this process is restarted). Else `UnknownKeyError`."""
        key = self.get(key_id)
        if key is None and self.path is not None and self.path.exists():
            key = _read_file(self.path, self.setting).get(key_id)
            if key is not None:
                self._later[key_id] = key
        if key is None:
            raise UnknownKeyError(what, key_id, self)
        return key

    def __repr__(self) -> str:
        return f"KeyRing({self.setting}, ids={self.ids})"


@dataclass(frozen=True)
class RingSpec:
    """Where one ring comes from: its setting, its one-key alias (if any) and its data-dir file."""

    setting: str
    entries: list[SecretStr]
    alias: str | None
    single: SecretStr | None
    path: Path

    @property
    def from_settings(self) -> bool:
        return bool(self.entries) or self.single is not None


def ring_spec(settings: Settings, name: str) -> RingSpec:
    """`name`: "payload", "secrets" or "party-hash"."""
    data = settings.data_dir
    if name == "payload":
        return RingSpec("MOJAFLOW_PAYLOAD_KEYS", settings.payload_keys, "MOJAFLOW_PAYLOAD_KEY",
                        settings.payload_key, data / "payload.key")  # fmt: skip
    if name == "party-hash":
        return RingSpec("MOJAFLOW_PARTY_HASH_KEYS", settings.party_hash_keys, "MOJAFLOW_PARTY_HASH_KEY",
                        settings.party_hash_key, data / "party-hash.key")  # fmt: skip
    if name == "secrets":
        return RingSpec("MOJAFLOW_SECRETS_KEYS", settings.secrets_keys, None, None, data / "secrets.key")
    raise ValueError(f"no key ring named {name!r}")


def load_ring(spec: RingSpec) -> KeyRing:
    """The ring of its setting, else of its one-key alias, else of its data-dir file (created 0600 with one new
    key if missing). Raises ValueError naming the setting when a key is malformed or both settings are set."""
    if spec.entries and spec.single is not None:
        raise ValueError(f"{spec.setting} and {spec.alias} are both set: keep {spec.setting} only")
    if spec.entries:
        return KeyRing(spec.setting, _parse([s.get_secret_value() for s in spec.entries], spec.setting))
    if spec.single is not None:
        key = _decode(spec.single.get_secret_value(), f"{spec.alias}")
        return KeyRing.single(key, setting=spec.setting, alias=spec.alias)
    if not spec.path.exists():
        _create_exclusively(spec.path, _format([_new_entry()]))
    return _read_file(spec.path, spec.setting)


def load_payload_ring(settings: Settings) -> KeyRing:
    return load_ring(ring_spec(settings, "payload"))


def load_secrets_ring(settings: Settings) -> KeyRing:
    return load_ring(ring_spec(settings, "secrets"))


def load_party_hash_ring(settings: Settings) -> KeyRing:
    return load_ring(ring_spec(settings, "party-hash"))


def prepend_new_key(path: Path, setting: str) -> KeyRing:
    """Generate a key and write it first into the ring file at `path` (created if missing), keeping the others.
    Atomic (a reader sees the old ring or the new one) and serialised against a concurrent rotation."""
    with _locked(path):
        old = list(_read_file(path, setting).entries) if path.exists() else []
        entries = [_new_entry(), *old]
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _write_private(temporary, _format(entries), exclusive=False)
        os.replace(temporary, path)
    return KeyRing(setting, tuple(entries), path)


# -- parsing and files -------------------------------------------------------------------------------


def _check_key(key: bytes, where: str) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where}: a key must be base64 of {KEY_BYTES} random bytes")


def _decode(encoded: str, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        key = b""
    _check_key(key, where)
    return key


def _parse(items: list[str], where: str) -> tuple[tuple[str, bytes], ...]:
    """`id:base64` entries, or bare base64 (an earlier version's one key) with the derived id; ids unique, at
    least one."""
    entries: list[tuple[str, bytes]] = []
    for number, item in enumerate(items, start=1):
        key_id, colon, encoded = item.strip().partition(":")
        if not colon:
            key = _decode(key_id, f"{where}, entry {number}")
            key_id = derived_key_id(key)
        elif not _KEY_ID.match(key_id):
            raise ValueError(f"{where}: entry {number} must be id:base64 (an id of letters, digits, . _ -) or base64")
        else:
            key = _decode(encoded, f"{where}, entry {number} ({key_id})")
        if any(known == key_id for known, _ in entries):
            raise ValueError(f"{where}: key id {key_id!r} appears twice")
        entries.append((key_id, key))
    if not entries:
        raise ValueError(f"{where}: holds no key")
    return tuple(entries)


def _read_file(path: Path, setting: str) -> KeyRing:
    lines = [line for line in path.read_text().replace(",", "\n").splitlines() if line.strip()]
    return KeyRing(setting, _parse(lines, f"{setting} (unset: the ring in {path})"), path)


def _format(entries: list[tuple[str, bytes]]) -> str:
    return "".join(f"{key_id}:{base64.b64encode(key).decode()}\n" for key_id, key in entries)


def _new_entry() -> tuple[str, bytes]:
    key = os.urandom(KEY_BYTES)
    return derived_key_id(key), key


def _write_private(path: Path, text: str, *, exclusive: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_EXCL if exclusive else 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)  # an existing temporary keeps its mode: be sure


def _create_exclusively(path: Path, text: str) -> None:
    """Publish a complete file or leave the one another process published first (never a half-written one)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    _write_private(temporary, text, exclusive=False)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
