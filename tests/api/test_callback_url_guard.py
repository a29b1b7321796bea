"""What Callback Update answers for destinations the outbound URL guard refuses (the guard's
own rules are in tests/core/test_url_guard.py). No dispatcher runs: nothing is contacted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.core.settings import Settings
from tests.support.api import create_partner
from tests.support.settings import make_settings
from tests.support.tokens import auth


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The guard as it runs in production: no network is exempt."""
    return make_settings(tmp_path, allowed_networks=())


Put = Callable[[str], Any]


def _put(client: TestClient, partner: str) -> Put:
    def put(url: str) -> Any:
        return client.put(
            f"/partners/{partner}/callbacks/1", json={"url": url}, headers=auth("callbacks:write")
        )

    return put


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "http://LOCALHOST./hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://good.example@127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/hook",
        "https://[fd00::1]/hook",
    ],
)
async def test_registration_refuses_blocked_destinations(
    client: TestClient, partner: str, url: str
) -> None:
    response = await _put(client, partner)(url)

    assert response.status == 400
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    [error] = problem["errors"]
    assert error["field"] == "url"
    assert "private or internal address" in error["message"]
    listing = await client.get(f"/partners/{partner}/callbacks", headers=auth("callbacks:read"))
    assert (await listing.json())["total"] == 0


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/hook", "https://[2001:4860:4860::8888]/hook", "https://x.invalid/h"]
)
async def test_registration_accepts_public_and_unresolvable_destinations(
    client: TestClient, partner: str, url: str
) -> None:
    response = await _put(client, partner)(url)  # no dispatcher runs: nothing is contacted

    assert response.status == 201, await response.text()


async def test_require_https_refuses_plain_http(
    aiohttp_client: Any, tmp_path: Path, database: str
) -> None:
    settings = make_settings(tmp_path, allowed_networks=(), require_https=True)
    client = await aiohttp_client(create_app(settings, database))
    put = _put(client, await create_partner(client, "Acme"))

    refused = await put("http://8.8.8.8/hook")
    accepted = await put("https://8.8.8.8/hook")

    assert refused.status == 400
    [error] = (await refused.json())["errors"]
    assert error == {"field": "url", "message": "must be an absolute https URL"}
    assert accepted.status == 201
