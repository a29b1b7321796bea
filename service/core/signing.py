"""Standard Webhooks signatures over ``"{id}.{timestamp}.{body}"``.

- ``hmac-sha256`` (the default): ``v1,<base64 HMAC-SHA256>``, keyed with the base64-decoded part
  of the secret after ``whsec_``, which the partner holds too.
- ``ed25519``: ``v1a,<base64 Ed25519 signature>``. callbackhub keeps the private key
  (``whsk_`` + base64 of its 32-byte seed); the partner verifies with the public key
  (``whpk_`` + base64 of its 32 bytes).

The kind of a secret is its prefix, so a callback changing kinds simply rotates to a secret of
the other kind. During a rotation the request carries one signature per valid secret,
separated by spaces.
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
HMAC, ED25519 = "hmac-sha256", "ed25519"


@functools.lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret, decoded once per secret rather than once per attempt."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


@functools.lru_cache(maxsize=4096)
def _private_key(secret: str) -> Ed25519PrivateKey:
    seed = base64.b64decode(secret.removeprefix(PRIVATE_KEY_PREFIX))
    return Ed25519PrivateKey.from_private_bytes(seed)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    if secret.startswith(PRIVATE_KEY_PREFIX):
        return "v1a," + base64.b64encode(_private_key(secret).sign(signed)).decode("ascii")
    digest = hmac.digest(secret_key(secret), signed, "sha256")  # one-shot, in OpenSSL
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join([sign(secret, message_id, timestamp, body) for secret in secrets])


def new_signing_secret(kind: str = HMAC) -> str:
    """A new secret of the kind: ``whsec_`` and the base64 of 32 random bytes, as Standard
    Webhooks expects, or an Ed25519 private key (``whsk_``)."""
    if kind == ED25519:
        seed = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode("ascii")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def kind_of(secret: str) -> str:
    return ED25519 if secret.startswith(PRIVATE_KEY_PREFIX) else HMAC


def public_key(secret: str) -> str:
    """What a partner verifies an Ed25519 signature with: ``whpk_`` + base64 of 32 bytes."""
    raw = _private_key(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")
