"""Tokens: the suite's own (``token``, ``auth``), and for the auth tests tokens signed with any
key or crafted by hand byte by byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from service.api.tokens import mint_token
from service.core.settings import Settings

JWT_SECRET = "test-secret-with-enough-entropy-for-hs256-0123456789"


def token(
    scopes: str = "partners:admin", partner: uuid.UUID | str | None = None, ttl: int = 600
) -> str:
    """A token of the suite's HS256 secret with these scopes, bound to ``partner`` if given."""
    settings = Settings(jwt_secret=JWT_SECRET)
    partner_id = uuid.UUID(str(partner)) if partner else None
    return mint_token(settings, scopes.split(), partner_id, ttl)


def auth(scopes: str = "partners:admin", partner: uuid.UUID | str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scopes, partner)}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    """One base64url JSON segment of a JWT."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(scope: Any = "callbacks:read", ttl: int = 600, **extra: Any) -> dict[str, Any]:
    """Claims of a token valid for ``ttl`` seconds; an ``extra`` value of None drops the claim."""
    now = int(time.time())
    values: dict[str, Any] = {"sub": "test", "scope": scope, "iat": now, "exp": now + ttl}
    values.update(extra)
    return {name: value for name, value in values.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = JWT_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def unsigned(payload: dict[str, Any], alg: str = "none", signature: str = "") -> str:
    """``{"alg": "none"}`` + claims + an empty (or given) signature, built by hand."""
    return f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(payload)}.{signature}"


def hmac_signed(payload: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 token signed by hand, so any bytes (a PEM public key too) can be the key."""
    signing_input = f"{segment(header or {'alg': 'HS256', 'typ': 'JWT'})}.{segment(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(private_key: PrivateKeyTypes) -> str:
    public = private_key.public_key()
    return public.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
