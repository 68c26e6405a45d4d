"""Identity codes at rest: encrypted with AES-GCM under a key with an id, found by a keyed hash.

The database never holds an identity code in the clear. Each client row keeps
- ``personal_id_hash``: HMAC-SHA256 of the code under the lookup key — searches and the unique
  constraint use it (the same code always gives the same hash, and without the key a hash
  cannot be tested against guessed codes);
- ``personal_id_cipher``: a fresh 96-bit nonce followed by the AES-256-GCM ciphertext, with the
  hash as associated data, so a ciphertext moved onto another client's row does not decrypt;
- ``personal_id_key``: the id of the key that encrypted it.

Other stored data that can hold a code goes through the same keys: ``seal_bytes`` encrypts a blob
(the stored answers of idempotent requests) under the active key, and ``digest`` is a keyed hash for
a purpose (the hash of an idempotent request, whose body may hold a code).

The key file (JSON, ``SILTA_IDENTITY_KEY_FILE``; the embedded default creates one in the data
folder) holds ``{"active": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...},
"lookup": "<base64 of 32 bytes>"}``. Rotation: add a key and make it active — new codes use it,
older ones still decrypt with the key named on their row (keep retired keys in the file; a
bulk re-encryption under the new key is not built yet). The lookup key never rotates: every hash
depends on it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VAULT = "silta.vault"


class VaultError(Exception):
    """The key file is unusable, or a ciphertext does not decrypt (tampered or a lost key)."""


def new_key_file(path: Path, key_id: str = "k1") -> None:
    """Write a fresh key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "active": key_id,
        "keys": {key_id: _b64(secrets.token_bytes(32))},
        "lookup": _b64(secrets.token_bytes(32)),
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Vault:
    """Seals and opens identity codes with the deployment's keys (read on first use)."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path, self.create = path, create

    @cached_property
    def _document(self) -> dict[str, Any]:
        if self.create and not self.path.exists():
            with contextlib.suppress(FileExistsError):  # another process made it first
                new_key_file(self.path)
        try:
            document = json.loads(self.path.read_text())
            keys = {key_id: base64.b64decode(value) for key_id, value in document["keys"].items()}
            lookup = base64.b64decode(document["lookup"])
            active = document["active"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VaultError(f"the identity key file {self.path} is missing or malformed") from exc
        if active not in keys or any(len(key) != 32 for key in [*keys.values(), lookup]):
            raise VaultError("the identity key file needs an active key and 32-byte keys")
        return {"keys": keys, "lookup": lookup, "active": active}

    @property
    def active_key(self) -> str:
        return str(self._document["active"])

    def lookup(self, code: str) -> str:
        """The keyed hash a code is found and kept unique by."""
        return hmac.new(self._document["lookup"], code.encode(), hashlib.sha256).hexdigest()

    def seal(self, code: str) -> tuple[str, bytes, str]:
        """(hash, nonce + ciphertext, key id) for a code, under the active key."""
        digest = self.lookup(code)
        nonce = secrets.token_bytes(12)
        cipher = AESGCM(self._document["keys"][self.active_key]).encrypt(nonce, code.encode(), digest.encode())
        return digest, nonce + cipher, self.active_key

    def open(self, digest: str, sealed: bytes, key_id: str) -> str:
        """The code again; ``VaultError`` if the key is gone or the row was tampered with."""
        key = self._document["keys"].get(key_id)
        if key is None:
            raise VaultError(f"identity key {key_id!r} is not in the key file")
        try:
            return AESGCM(key).decrypt(sealed[:12], sealed[12:], digest.encode()).decode()
        except Exception as exc:  # InvalidTag: tampered, moved between rows, or the wrong key
            raise VaultError("an identity code does not decrypt") from exc

    def digest(self, purpose: str, data: bytes) -> str:
        """A keyed hash of ``data`` under a key of its own for ``purpose`` (derived from the lookup key)."""
        key = hmac.new(self._document["lookup"], f"silta-{purpose}".encode(), hashlib.sha256).digest()
        return hmac.new(key, data, hashlib.sha256).hexdigest()

    def seal_bytes(self, data: bytes, context: bytes) -> bytes:
        """``data`` encrypted under the active key; ``context`` must be given again to open it."""
        key_id = self.active_key.encode()
        if len(key_id) > 255:
            raise VaultError("identity key ids are at most 255 bytes")
        nonce = secrets.token_bytes(12)
        cipher = AESGCM(self._document["keys"][self.active_key]).encrypt(nonce, data, context)
        return bytes([len(key_id)]) + key_id + nonce + cipher

    def open_bytes(self, sealed: bytes, context: bytes) -> bytes:
        """What ``seal_bytes`` encrypted with this ``context``; ``VaultError`` if it does not decrypt."""
        size = sealed[0] if sealed else 0
        key_id, rest = sealed[1 : 1 + size].decode("utf-8", "replace"), sealed[1 + size :]
        key = self._document["keys"].get(key_id)
        if key is None:
            raise VaultError(f"identity key {key_id!r} is not in the key file")
        try:
            return AESGCM(key).decrypt(rest[:12], rest[12:], context)
        except Exception as exc:  # InvalidTag: tampered, moved to another row, or the wrong key
            raise VaultError("a sealed value does not decrypt") from exc


def vault_of(session: Any) -> Vault:
    vault = session.info.get(VAULT)
    if not isinstance(vault, Vault):
        raise RuntimeError("the session has no identity vault (sessions come from the app's sessionmaker)")
    return vault
