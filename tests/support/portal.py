"""The portal as a test drives it: a real server on a known port (its links point there),
links minted through the API, and sessions as a browser keeps them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from service.server import build_app
from tests.support.processes import free_port
from tests.support.settings import make_settings
from tests.support.tokens import auth

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Portal:
    url: str
    server: TestServer

    async def link(self, partner: str | None, access: str = "manage", ttl: int = 3600) -> str:
        path = f"/partners/{partner}/portal-links" if partner else "/portal-links"
        async with aiohttp.ClientSession(base_url=self.url) as http:
            body = {"access": access, "expiresIn": ttl}
            async with http.post(path, json=body, headers=auth()) as response:
                assert response.status == 201, await response.text()
                url: str = (await response.json())["url"]
        return url

    def session(self) -> aiohttp.ClientSession:
        """A client that keeps cookies as a browser does (for 127.0.0.1 too)."""
        return aiohttp.ClientSession(base_url=self.url, cookie_jar=aiohttp.CookieJar(unsafe=True))


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
async def portal(
    database: str, tmp_path: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Portal]:
    """The API, the portal and a dispatcher on a real port, as `serve` runs them."""
    port = free_port()
    overrides = getattr(request, "param", {})
    settings = make_settings(
        tmp_path, port=port, public_url=f"http://127.0.0.1:{port}", **overrides
    )
    server = TestServer(build_app(settings, database, with_dispatcher=True), port=port)
    await server.start_server()
    yield Portal(f"http://127.0.0.1:{port}", server)
    await server.close()
