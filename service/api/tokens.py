"""Bearer JWTs: who is calling, with which scopes, for which partner; and minting them.

The accepted algorithms are fixed by configuration (HS256 with the shared secret; RS256 and
ES256 with the public key), never taken from the token, and ``none`` is never accepted.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import jwt
from pydantic import SecretStr

from service.core.errors import Forbidden, Unauthorized
from service.core.settings import Settings


class Scope(StrEnum):
    """What a token allows; a route declares the one it needs (``service.api.routes``)."""

    CALLBACKS_READ = "callbacks:read"
    CALLBACKS_WRITE = "callbacks:write"
    NOTIFICATIONS_EMIT = "notifications:emit"
    DELIVERIES_READ = "deliveries:read"
    DELIVERIES_WRITE = "deliveries:write"
    PORTAL_LINKS = "portal:links"  # mint partner portal links (service tokens only)
    PARTNERS_ADMIN = "partners:admin"  # every operation, on every partner


SCOPES = frozenset(Scope)
ADMIN_SCOPE = Scope.PARTNERS_ADMIN
MAX_TOKEN_BYTES = 8192
_CACHE_LIMIT = 10_000
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")


class InvalidToken(Unauthorized):
    """The bearer token is missing, malformed, expired or badly signed."""


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    subject: str | None
    scopes: frozenset[str]
    partner_id: UUID | None

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes and not self.is_admin:
            raise Forbidden(f"the token lacks the scope {scope}")

    def require_partner(self, partner_id: UUID) -> None:
        """A partner-bound token acts on its own partner only."""
        if self.partner_id is not None and partner_id != self.partner_id:
            raise Forbidden("the token is bound to another partner")

    def require_unbound(self) -> None:
        """Operations that span partners are refused to a partner-bound token."""
        if self.partner_id is not None:
            raise Forbidden("a token bound to a partner cannot do this; it spans all partners")


class TokenVerifier:
    """Verifies tokens and remembers verified ones until they expire."""

    def __init__(self, settings: Settings) -> None:
        self._keys: dict[str, Any] = {}
        if settings.jwt_secret is not None:
            self._keys["HS256"] = settings.jwt_secret.get_secret_value()
        if settings.jwt_public_key is not None:
            public_key = settings.jwt_public_key.get_secret_value()
            self._keys["RS256"] = public_key
            self._keys["ES256"] = public_key
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._cache: dict[str, tuple[float, Principal]] = {}

    def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        claims = self._decode(token)
        principal = _principal_from(claims)
        self._remember(token, float(claims["exp"]), principal)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("the bearer token is too large")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if not isinstance(algorithm, str) or algorithm not in self._keys:
                raise InvalidToken("the token's algorithm is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._keys[algorithm],
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"invalid token: {error}") from None
        return claims

    def _remember(self, token: str, expires: float, principal: Principal) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = (expires, principal)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """RFC 6749 scopes: tokens of printable ASCII separated by single spaces. Anything else
    (a list, tabs, non-breaking or doubled spaces) is refused rather than guessed at."""
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or (scope and not _SCOPE.fullmatch(scope)):
        raise InvalidToken("the scope claim must be a space-separated string")
    return frozenset(scope.split(" ")) & SCOPES


def _principal_from(claims: dict[str, Any]) -> Principal:
    scopes = _scopes(claims)
    partner = claims.get("partner_id")
    try:
        partner_id = UUID(partner) if partner is not None else None
    except (TypeError, ValueError, AttributeError):
        raise InvalidToken("the partner_id claim must be a UUID") from None
    subject = claims.get("sub")
    return Principal(
        subject=str(subject) if subject is not None else None,
        scopes=scopes,
        partner_id=partner_id,
    )


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        raise InvalidToken("the Authorization header is missing")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def mint_token(
    settings: Settings,
    scopes: list[str],
    partner_id: UUID | None = None,
    ttl: int = 3600,
    subject: str = "callbackhub-cli",
) -> str:
    """Sign an HS256 token with the configured secret (used by ``callbackhub token``)."""
    if settings.jwt_secret is None:
        raise ValueError("CALLBACKHUB_JWT_SECRET is not set")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl,
    }
    if partner_id is not None:
        claims["partner_id"] = str(partner_id)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def ensure_jwt_secret(settings: Settings) -> tuple[Settings, bool]:
    """Settings with a JWT secret: the configured one, or one kept in the data folder.

    Returns whether a new secret was generated, so ``serve`` can say how to mint a token.
    """
    if settings.jwt_secret is not None or settings.jwt_public_key is not None:
        return settings, False
    path = settings.data_dir / "jwt-secret"
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    secret = SecretStr(path.read_text().strip())
    return settings.model_copy(update={"jwt_secret": secret}), created
