"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

The key is the base64-decoded part of the secret after ``whsec_``. During a secret rotation
the request carries one signature per valid secret, separated by spaces.
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


@functools.lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret, decoded once per secret rather than once per attempt."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, "sha256")  # one-shot, in OpenSSL
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)


def new_signing_secret() -> str:
    """``whsec_`` and the base64 of 32 random bytes, as Standard Webhooks expects."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
