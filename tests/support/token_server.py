"""A real OAuth2 token endpoint on 127.0.0.1 (the partner's identity provider: the outside
world). It checks ``grant_type=client_credentials`` and the client's authentication, Basic or
in the form, and issues ``token-1``, ``token-2``…"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

CLIENT_ID, CLIENT_SECRET = "callbackhub", "cl!ent s3cret"


@dataclass
class TokenServer:
    """Issues ``token-1``, ``token-2``… to the right client; answers ``failing`` when set."""

    lifetime: int = 3600
    failing: int | None = None
    issued: list[str] = field(default_factory=list)
    forms: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _client_ok(self, request: web.Request, form: dict[str, str]) -> bool:
        basic = "Basic " + base64.b64encode(b"callbackhub:cl%21ent+s3cret").decode()
        if request.headers.get("Authorization") == basic:
            return True
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        if self.failing is not None:
            return web.json_response({"error": "server_error", "secret": "x"}, status=self.failing)
        if form.get("grant_type") != "client_credentials" or not self._client_ok(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"token-{next(self._counter)}"
        self.issued.append(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        )


async def running_token_server() -> AsyncIterator[TokenServer]:
    server = TokenServer()
    app = web.Application()
    app.router.add_post("/oauth/token", server._token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/oauth/token"
    yield server
    await runner.cleanup()


def oauth2_auth(server: TokenServer, client_auth: str = "basic") -> dict[str, str]:
    return {
        "type": "oauth2_client_credentials",
        "tokenUrl": server.url,
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "scope": "webhooks:write",
        "clientAuth": client_auth,
    }
