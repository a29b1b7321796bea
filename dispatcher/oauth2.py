"""OAuth2 client credentials for callbacks whose gateway wants a token, not only our signature.

One token per client (token URL, client id, client secret), fetched through the same guarded
session as the deliveries (the URL guard applies to the token endpoint too), shared by every
concurrent attempt (one request, not one per delivery) and used until shortly before it
expires. A partner's 401 forces one refresh.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus

import aiohttp

# A token is used until this long before it expires (or a tenth of its life, if shorter).
REFRESH_MARGIN = 30.0
DEFAULT_LIFETIME = 3600.0


@dataclass(frozen=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    audience: str | None = None
    client_auth: Literal["basic", "post"] = "basic"

    @property
    def key(self) -> tuple[str, str, str]:
        digest = hashlib.sha256(self.client_secret.encode()).hexdigest()
        return (self.token_url, self.client_id, digest)


class TokenEndpointFailed(Exception):
    """The token endpoint gave no token; the message names its status, never its body."""


@dataclass
class _Token:
    value: str
    refresh_at: float  # time.monotonic()


class TokenCache:
    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._pending: dict[tuple[str, str, str], asyncio.Future[str]] = {}

    async def token(self, client: ClientCredentials, *, refresh_from: str | None = None) -> str:
        """A valid token; ``refresh_from`` is a token the partner refused: get another one
        (unless a concurrent refresh already replaced it)."""
        cached = self._tokens.get(client.key)
        usable = cached is not None and time.monotonic() < cached.refresh_at
        if cached is not None and usable and cached.value != refresh_from:
            return cached.value
        pending = self._pending.get(client.key)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._fetch_shared(client)

    async def _fetch_shared(self, client: ClientCredentials) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[client.key] = future
        try:
            value, lifetime = await self._fetch(client)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a failure with no other waiter is not "lost"
            raise
        finally:
            del self._pending[client.key]
        margin = min(REFRESH_MARGIN, lifetime / 10)
        self._tokens[client.key] = _Token(value, time.monotonic() + lifetime - margin)
        future.set_result(value)
        return value

    async def _fetch(self, client: ClientCredentials) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if client.scope:
            form["scope"] = client.scope
        if client.audience:
            form["audience"] = client.audience
        headers = {"Accept": "application/json"}
        if client.client_auth == "basic":  # RFC 6749 2.3.1: form-encoded, then Basic
            pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": client.client_id, "client_secret": client.client_secret}
        try:
            async with self._session.post(
                client.token_url,
                data=form,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                if response.status != 200:
                    raise TokenEndpointFailed(f"token endpoint answered {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise TokenEndpointFailed(
                f"token endpoint unreachable: {type(error).__name__}"
            ) from None
        return _token_of(document)


def _token_of(document: object) -> tuple[str, float]:
    if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        raise TokenEndpointFailed("token endpoint answered without an access_token")
    lifetime = document.get("expires_in", DEFAULT_LIFETIME)
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_LIFETIME
    return document["access_token"], float(lifetime)
