"""Secrets at rest: every secret callbackhub stores is sealed with AES-256-GCM.

A stored value reads ``enc1:<key id>:<base64 of nonce + ciphertext + tag>``. The nonce is fresh
for every value, and the row's identity (for example ``callbacks/<partner>/<type>``) is the
associated data: a ciphertext copied into another row does not open there.

The keys come from ``CALLBACKHUB_ENCRYPTION_KEYS`` (``id:base64key,...``) or the file named by
``CALLBACKHUB_ENCRYPTION_KEYS_FILE``: the first key seals, every key opens, so a key can be
rotated in (``callbackhub keys rotate``) while the old one still opens what it sealed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.core.settings import ConfigurationError, Settings

SEALED_PREFIX = "enc1:"
KEYS_FILE_NAME = "encryption-keys"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NONCE_BYTES = 12
_KEY_BYTES = 32
_CACHE_LIMIT = 10_000


class EncryptionKeyError(ConfigurationError):
    """The encryption keys are missing, malformed, or cannot open what is stored."""


class SecretUnreadable(Exception):
    """A stored secret that no configured key opens (or that was never sealed)."""


@dataclass(frozen=True)
class EncryptionKey:
    key_id: str
    aead: AESGCM


class Keyring:
    """The configured keys: ``seal`` with the first, ``open`` with whichever sealed a value."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise EncryptionKeyError("no encryption key configured")
        self._keys = {key_id: EncryptionKey(key_id, AESGCM(key)) for key_id, key in keys}
        self.primary = keys[0][0]
        # Opened values, so the dispatcher does not run AES on the same secret per attempt.
        self._opened: dict[tuple[str, str], str] = {}

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def seal(self, plaintext: str, row: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self.primary].aead.encrypt(nonce, plaintext.encode(), row.encode())
        body = base64.b64encode(nonce + sealed).decode("ascii")
        return f"{SEALED_PREFIX}{self.primary}:{body}"

    def open(self, stored: str, row: str) -> str:
        cached = self._opened.get((stored, row))
        if cached is not None:
            return cached
        plaintext = self._open(stored, row)
        if len(self._opened) >= _CACHE_LIMIT:
            self._opened.clear()
        self._opened[(stored, row)] = plaintext
        return plaintext

    def _open(self, stored: str, row: str) -> str:
        key_id, body = _split(stored)
        key = self._keys.get(key_id)
        if key is None:
            raise SecretUnreadable(f"sealed with key {key_id!r}, which is not configured")
        try:
            raw = base64.b64decode(body, validate=True)
            plaintext = key.aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], row.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretUnreadable(f"key {key_id!r} does not open the secret of {row}") from None
        return plaintext.decode()


def sealed_key_id(stored: str) -> str:
    """The id of the key that sealed ``stored``."""
    return _split(stored)[0]


def _split(stored: str) -> tuple[str, str]:
    if not stored.startswith(SEALED_PREFIX):
        raise SecretUnreadable("the stored value is not sealed")
    key_id, _, body = stored.removeprefix(SEALED_PREFIX).partition(":")
    return key_id, body


def generate_key(key_id: str | None = None) -> str:
    """A new key, written as the configuration takes it: ``id:base64key``."""
    key_id = key_id or f"k{secrets.token_hex(4)}"
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode('ascii')}"


def parse_keys(text: str, origin: str) -> Keyring:
    """The keys of ``id:base64key,id:base64key``; ``origin`` names the variable in errors."""
    keys: list[tuple[str, bytes]] = []
    for entry in (part.strip() for part in text.replace("\n", ",").split(",")):
        if entry:
            keys.append(_parse_key(entry, origin))
    ids = [key_id for key_id, _ in keys]
    if len(set(ids)) != len(ids):
        raise EncryptionKeyError(f"{origin}: a key id appears twice")
    if not keys:
        raise EncryptionKeyError(f"{origin}: no key in it")
    return Keyring(keys)


def _parse_key(entry: str, origin: str) -> tuple[str, bytes]:
    key_id, separator, encoded = entry.partition(":")
    if not separator or not _KEY_ID.fullmatch(key_id):
        raise EncryptionKeyError(
            f"{origin}: each key is id:base64key with an id of letters, digits, - or _"
        )
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != _KEY_BYTES:
        raise EncryptionKeyError(f"{origin}: key {key_id!r} is not 32 bytes of base64")
    return key_id, key


def ensure_encryption_keys(settings: Settings) -> tuple[Settings, bool]:
    """Settings with encryption keys: the configured ones or, on the embedded database, a key
    kept in the data folder (made on the first run, mode 0600). Returns whether one was made."""
    if settings.encryption_keys is not None or settings.encryption_keys_file is not None:
        return settings, False
    if settings.database_url is not None:
        return settings, False  # load_keyring says what is missing
    path = settings.data_dir / KEYS_FILE_NAME
    created = not path.exists()
    if created:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate_key("k1") + "\n")
    return settings.model_copy(update={"encryption_keys_file": path}), created


def load_keyring(settings: Settings) -> Keyring:
    """The keyring the settings name; a one-line error when there is none."""
    if settings.encryption_keys is not None:
        return parse_keys(
            settings.encryption_keys.get_secret_value(), "CALLBACKHUB_ENCRYPTION_KEYS"
        )
    if settings.encryption_keys_file is not None:
        origin = "CALLBACKHUB_ENCRYPTION_KEYS_FILE"
        try:
            text = settings.encryption_keys_file.read_text()
        except OSError as error:
            raise EncryptionKeyError(f"{origin}: cannot read it: {error.strerror}") from None
        return parse_keys(text, f"{origin} ({settings.encryption_keys_file})")
    raise EncryptionKeyError(
        "CALLBACKHUB_ENCRYPTION_KEYS is not set: with CALLBACKHUB_DATABASE_URL, give the key "
        "that seals stored secrets (make one with `callbackhub keys generate`)"
    )
