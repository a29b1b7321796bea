"""Per-callback delivery options: custom headers, outbound authentication, the signature kind.

What is not secret (header names, the auth type and username, the signature kind) is kept in
``callbacks.delivery_options`` and shown in the callback object. What is (header values, the
password or token) is sealed in ``callbacks.sealed_credentials`` as one JSON document holding
the headers and the ``Authorization`` value ready to send; the callback object shows it masked.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from service.core import certificates
from service.core.encryption import Keyring
from service.core.errors import ValidationFailed
from service.core.schemas import (
    HEADER_TOKEN,
    HEADER_VALUE,
    RESERVED_HEADERS,
    BasicAuth,
    BearerAuth,
    CallbackUpdate,
    MutualTls,
    OAuth2ClientCredentials,
)
from service.core.signing import ED25519, HMAC, kind_of, public_key
from service.core.stored_secrets import CREDENTIALS_SUFFIX, callback_row

MASK = "••••"
OAUTH2 = "oauth2_client_credentials"
MTLS = "mtls"
SECRET_FIELD = {"basic": "password", "bearer": "token", OAUTH2: "clientSecret", MTLS: "privateKey"}
RESERVED = frozenset(RESERVED_HEADERS)
RESERVED_PREFIX = "webhook-"
MAX_VALUE = 4096


@dataclass(frozen=True)
class DeliveryOptions:
    """The options as stored in the clear, and as the callback object shows them."""

    header_names: tuple[str, ...] = ()
    # {"type", and "username", or the OAuth2 client's tokenUrl, clientId…}: never a secret
    auth: dict[str, str] | None = None
    signature: str = HMAC
    public_key: str | None = None  # ed25519: the current key's public half
    tls: dict[str, str] | None = None  # {"caCertificate": PEM}

    def as_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "headerNames": list(self.header_names),
            "signature": self.signature,
        }
        if self.auth is not None:
            stored["auth"] = self.auth
        if self.public_key is not None:
            stored["publicKey"] = self.public_key
        if self.tls is not None:
            stored["tls"] = self.tls
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> DeliveryOptions:
        stored = stored or {}
        return cls(
            tuple(stored.get("headerNames", ())),
            stored.get("auth"),
            stored.get("signature", HMAC),
            stored.get("publicKey"),
            stored.get("tls"),
        )

    def masked_headers(self) -> dict[str, str]:
        return {name: MASK for name in self.header_names}

    def masked_auth(self) -> dict[str, str] | None:
        if self.auth is None:
            return None
        return self.auth | {SECRET_FIELD[self.auth["type"]]: MASK}

    @property
    def oauth2(self) -> bool:
        return self.auth is not None and self.auth["type"] == OAUTH2

    @property
    def mtls(self) -> bool:
        return self.auth is not None and self.auth["type"] == MTLS


@dataclass(frozen=True)
class Credentials:
    """The secret part: header values, and the Authorization value to send."""

    headers: dict[str, str] = field(default_factory=dict)
    authorization: str | None = None
    client_secret: str | None = None  # OAuth2: the token is fetched at delivery time
    private_key: str | None = None  # mTLS: the client certificate's key (PEM)

    @property
    def empty(self) -> bool:
        return not (self.headers or self.authorization or self.client_secret or self.private_key)

    def request_headers(self) -> dict[str, str]:
        sent = dict(self.headers)
        if self.authorization is not None:
            sent["Authorization"] = self.authorization
        return sent


def credentials_row(partner_id: uuid.UUID | str, notification_type: int) -> str:
    """The associated data of a callback's sealed credentials (not its signing secrets')."""
    return callback_row(partner_id, notification_type) + CREDENTIALS_SUFFIX


def seal_credentials(
    keyring: Keyring, credentials: Credentials, partner_id: uuid.UUID | str, notification_type: int
) -> str | None:
    if credentials.empty:
        return None
    document = json.dumps(
        {
            "headers": credentials.headers,
            "authorization": credentials.authorization,
            "clientSecret": credentials.client_secret,
            "privateKey": credentials.private_key,
        }
    )
    return keyring.seal(document, credentials_row(partner_id, notification_type))


def open_credentials(
    keyring: Keyring, sealed: str | None, partner_id: uuid.UUID | str, notification_type: int
) -> Credentials:
    if sealed is None:
        return Credentials()
    document = json.loads(keyring.open(sealed, credentials_row(partner_id, notification_type)))
    return Credentials(
        document["headers"],
        document["authorization"],
        document.get("clientSecret"),
        document.get("privateKey"),
    )


def _header_error(name: str, value: str, with_auth: bool, seen: set[str]) -> str | None:
    lowered = name.lower()
    if lowered in RESERVED or lowered.startswith(RESERVED_PREFIX):
        return "callbackhub sets this header itself"
    if not re.fullmatch(HEADER_TOKEN, name):
        return "not an HTTP header name"
    if lowered == "authorization" and with_auth:
        return "set by auth; give one or the other"
    if lowered in seen:
        return "given twice (names are case-insensitive)"
    if len(value) > MAX_VALUE or not re.fullmatch(HEADER_VALUE, value):
        return f"at most {MAX_VALUE} characters, without CR, LF or NUL"
    return None


def _checked_headers(headers: dict[str, str], with_auth: bool) -> dict[str, str]:
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    for name, value in headers.items():
        message = _header_error(name, value, with_auth, seen)
        if message is not None:
            errors.append({"field": f"headers.{name}", "message": message})
        seen.add(name.lower())
    if errors:
        raise ValidationFailed(errors=errors)
    return headers


def _auth_parts(
    auth: BasicAuth | BearerAuth | OAuth2ClientCredentials | MutualTls,
) -> tuple[dict[str, str], str | None, str | None]:
    """What is shown, the Authorization value to send, and the secret kept for later (the
    OAuth2 client secret, or the mTLS private key)."""
    if isinstance(auth, MutualTls):
        certificates.check_client_certificate(auth.certificate, auth.private_key)
        return {"type": MTLS, "certificate": auth.certificate}, None, auth.private_key
    if isinstance(auth, OAuth2ClientCredentials):
        shown = auth.model_dump(by_alias=True, exclude={"client_secret"}, exclude_none=True)
        return shown, None, auth.client_secret
    shown, authorization = _authorization(auth)
    return shown, authorization, None


def _authorization(auth: BasicAuth | BearerAuth) -> tuple[dict[str, str], str]:
    if isinstance(auth, BasicAuth):
        pair = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode("ascii")
        return {"type": "basic", "username": auth.username}, f"Basic {pair}"
    return {"type": "bearer"}, f"Bearer {auth.token}"


def updated(
    options: DeliveryOptions, credentials: Credentials, update: CallbackUpdate
) -> tuple[DeliveryOptions, Credentials]:
    """The options after Callback Update: a field left out keeps its value, null removes it."""
    given = update.model_fields_set
    auth, authorization = options.auth, credentials.authorization
    kept = credentials.private_key if options.mtls else credentials.client_secret
    if "auth" in given:
        auth, authorization, kept = _auth_parts(update.auth) if update.auth else (None, None, None)
    tls = options.tls
    if "tls" in given:
        tls = None
        if update.tls is not None:
            certificates.check_ca_certificates(update.tls.ca_certificate)
            tls = {"caCertificate": update.tls.ca_certificate}
    headers = credentials.headers
    if "headers" in given:
        headers = dict(update.headers or {})
    _checked_headers(headers, with_auth=auth is not None)
    signature = update.signature if update.signature is not None else options.signature
    mtls = auth is not None and auth["type"] == MTLS
    return (
        DeliveryOptions(tuple(headers), auth, signature, options.public_key, tls),
        Credentials(
            headers,
            authorization,
            None if mtls else kept,
            kept if mtls else None,
        ),
    )


def with_signing_secret(options: DeliveryOptions, secret: str) -> DeliveryOptions:
    """The options once ``secret`` signs: its kind, and for ed25519 its public key."""
    kind = kind_of(secret)
    return replace(
        options, signature=kind, public_key=public_key(secret) if kind == ED25519 else None
    )
