"""Bad requests: every one is refused with an RFC 9457 problem, and nothing is stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api import create_partner, problem, validation_problem
from tests.support.tokens import auth

ADMIN = auth("partners:admin")
LIMIT = 256 * 1024


async def callback_count(client: TestClient, partner: str) -> int:
    response = await client.get(f"/partners/{partner}/callbacks", headers=ADMIN)
    total: int = (await response.json())["total"]
    return total


# Callback Update: path


async def test_unsupported_notification_type_is_400(client: TestClient, partner: str) -> None:
    for kind in ("99", "0", "4"):
        response = await client.put(
            f"/partners/{partner}/callbacks/{kind}",
            json={"url": "https://example.com/hook"},
            headers=ADMIN,
        )
        errors = await validation_problem(response)
        assert "notificationType" in errors, kind
    assert await callback_count(client, partner) == 0


async def test_non_integer_notification_type_is_400(client: TestClient, partner: str) -> None:
    for kind in ("abc", "1.5", "-1", "1e2", "%201", "9999999999999"):
        response = await client.put(
            f"/partners/{partner}/callbacks/{kind}",
            json={"url": "https://example.com/hook"},
            headers=ADMIN,
        )
        errors = await validation_problem(response)
        assert errors == {"notificationType": "must be a positive integer"}, kind


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/partners/{p}/callbacks/1"),
        ("GET", "/partners/{p}/callbacks/1"),
        ("DELETE", "/partners/{p}/callbacks/1"),
        ("GET", "/partners/{p}/callbacks/1/secret"),
        ("GET", "/partners/{p}/callbacks"),
        ("GET", "/partners/{p}"),
        ("DELETE", "/partners/{p}"),
    ],
)
async def test_malformed_partner_uuid_is_400(client: TestClient, method: str, path: str) -> None:
    body = {"url": "https://example.com/hook"} if method == "PUT" else None
    for bad in ("not-a-uuid", "1234", str(uuid.uuid4())[:-1]):
        response = await client.request(method, path.format(p=bad), json=body, headers=ADMIN)
        errors = await validation_problem(response)
        assert errors == {"partnerUniqueID": "must be a UUID"}, bad


async def test_token_is_checked_before_the_path(client: TestClient) -> None:
    response = await client.put(
        "/partners/not-a-uuid/callbacks/abc", json={"url": "https://example.com/hook"}
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


# Callback Update: body


@pytest.mark.parametrize(
    "url",
    [
        "/relative/hook",
        "example.com/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "https:///no-host",
        "https://example.com/" + "a" * (2049 - len("https://example.com/")),
        "https://exa mple.com/hook",
        "https://example.com:99999/hook",
        "",
    ],
    ids=[
        "relative",
        "no-scheme",
        "ftp",
        "file",
        "javascript",
        "no-host",
        "empty-host",
        "2049-chars",
        "space",
        "bad-port",
        "empty",
    ],
)
async def test_unacceptable_url_is_400_on_url(client: TestClient, partner: str, url: str) -> None:
    response = await client.put(
        f"/partners/{partner}/callbacks/1", json={"url": url}, headers=ADMIN
    )
    errors = await validation_problem(response)
    assert "url" in errors
    assert await callback_count(client, partner) == 0


async def test_bad_url_on_update_leaves_the_callback_alone(
    client: TestClient, partner: str
) -> None:
    path = f"/partners/{partner}/callbacks/1"
    created = await client.put(path, json={"url": "https://example.com/hook"}, headers=ADMIN)
    assert created.status == 201
    response = await client.put(path, json={"url": "ftp://example.com/hook"}, headers=ADMIN)
    await validation_problem(response)
    current = await (await client.get(path, headers=ADMIN)).json()
    assert current["url"] == "https://example.com/hook"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.com/hook", "secret": "mine"}, "secret"),
        ({"url": "https://example.com/hook", "signingSecret": "whsec_x"}, "signingSecret"),
        ({}, "url"),
        ({"url": 42}, "url"),
        ({"url": "https://example.com/hook", "enabled": "perhaps"}, "enabled"),
        ({"url": "https://example.com/hook", "description": "d" * 1001}, "description"),
        ({"url": "https://example.com/hook", "orderedDelivery": []}, "orderedDelivery"),
        ({"url": "https://example.com/hook", "orderedDelivery": 0}, "orderedDelivery"),
        ({"url": "https://example.com/hook", "enabled": 1}, "enabled"),
        ({"url": "https://example.com/hook", "enabled": "true"}, "enabled"),
        ({"url": "https://example.com/hook", "description": 7}, "description"),
    ],
    ids=[
        "unknown-field",
        "secret-not-settable",
        "missing-url",
        "url-not-string",
        "enabled-not-bool",
        "description-too-long",
        "ordered-not-bool",
        "ordered-zero-not-coerced",
        "enabled-one-not-coerced",
        "enabled-string-not-coerced",
        "description-number-not-coerced",
    ],
)
async def test_invalid_body_is_400_naming_the_field(
    client: TestClient, partner: str, body: dict[str, Any], field: str
) -> None:
    response = await client.put(f"/partners/{partner}/callbacks/1", json=body, headers=ADMIN)
    errors = await validation_problem(response)
    assert field in errors
    assert await callback_count(client, partner) == 0


@pytest.mark.parametrize(
    "raw",
    [b'{"url": ', b"not json", b"", b'{"url": "https://a.example/", "url": "https://b.example/"}'],
    ids=["truncated", "garbage", "empty", "duplicate-key"],
)
async def test_invalid_json_is_400(client: TestClient, partner: str, raw: bytes) -> None:
    response = await client.put(
        f"/partners/{partner}/callbacks/1",
        data=raw,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    await problem(response, 400)
    assert await callback_count(client, partner) == 0


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"https://example.com/hook"'])
async def test_json_that_is_not_an_object_is_400(
    client: TestClient, partner: str, raw: bytes
) -> None:
    response = await client.put(
        f"/partners/{partner}/callbacks/1",
        data=raw,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    await validation_problem(response)


def padded_body(size: int) -> bytes:
    """A valid callback body padded with whitespace to exactly ``size`` bytes."""
    body = json.dumps({"url": "https://example.com/hook"}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_body_of_exactly_256_kib_is_accepted(client: TestClient, partner: str) -> None:
    body = padded_body(LIMIT)
    assert len(body) == LIMIT
    response = await client.put(
        f"/partners/{partner}/callbacks/1",
        data=body,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status == 201, await response.text()


async def test_body_over_256_kib_is_413(client: TestClient, partner: str) -> None:
    response = await client.put(
        f"/partners/{partner}/callbacks/1",
        data=padded_body(LIMIT + 1),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    await problem(response, 413)
    assert await callback_count(client, partner) == 0


async def test_chunked_body_over_256_kib_is_413(client: TestClient, partner: str) -> None:
    """Without a Content-Length the limit is enforced while reading."""
    body = padded_body(LIMIT + 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    response = await client.put(
        f"/partners/{partner}/callbacks/1",
        data=chunks(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    await problem(response, 413)
    assert await callback_count(client, partner) == 0


async def test_non_json_content_type_is_415(client: TestClient, partner: str) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/json", None):
        headers = dict(ADMIN)
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await client.put(
            f"/partners/{partner}/callbacks/1",
            data=b'{"url": "https://example.com/hook"}',
            headers=headers,
        )
        await problem(response, 415)
    assert await callback_count(client, partner) == 0


async def test_partner_body_limits_apply_too(client: TestClient) -> None:
    too_large = await client.post(
        "/partners",
        data=b'{"name": "x"' + b" " * LIMIT + b"}",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    await problem(too_large, 413)
    not_json = await client.post("/partners", data=b"name=x", headers=ADMIN)
    await problem(not_json, 415)
    broken = await client.post(
        "/partners", data=b"{", headers={**ADMIN, "Content-Type": "application/json"}
    )
    await problem(broken, 400)


# Pagination, on both paginated lists


async def list_paths(client: TestClient) -> list[str]:
    """The two paginated lists: partners, and one partner's callbacks."""
    partner = await create_partner(client, "Paged")
    return ["/partners", f"/partners/{partner}/callbacks"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-5", "limit"),
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("offset=abc", "offset"),
        ("limit=", "limit"),
        ("page=2", "page"),
        ("limit=10&sort=name", "sort"),
    ],
)
async def test_bad_pagination_is_400(client: TestClient, query: str, field: str) -> None:
    for path in await list_paths(client):
        response = await client.get(f"{path}?{query}", headers=ADMIN)
        errors = await validation_problem(response)
        assert field in errors, path


@pytest.mark.parametrize("query", ["limit=1", "limit=100", "offset=0", "offset=3&limit=20"])
async def test_pagination_bounds_are_accepted(client: TestClient, query: str) -> None:
    for path in await list_paths(client):
        response = await client.get(f"{path}?{query}", headers=ADMIN)
        assert response.status == 200, await response.text()
        page = await response.json()
        expected = dict(part.split("=") for part in query.split("&"))
        for name, value in expected.items():
            assert page[name] == int(value)


# Problem+json everywhere


async def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    response = await client.get("/no/such/route", headers=ADMIN)
    await problem(response, 404)


async def test_wrong_method_is_a_405_problem_with_allow(client: TestClient, partner: str) -> None:
    response = await client.post(f"/partners/{partner}/callbacks/1", headers=ADMIN)
    await problem(response, 405)
    assert "PUT" in response.headers["Allow"]


@pytest.mark.parametrize("method", ["OPTIONS", "GET", "PUT"])
async def test_allow_lists_exactly_the_methods_of_redeliver_failed(
    client: TestClient, partner: str, method: str
) -> None:
    """``redeliver-failed`` is a path of its own, not a notification id."""
    path = f"/partners/{partner}/notifications/redeliver-failed"
    response = await client.request(method, path, headers=ADMIN)
    await problem(response, 405)
    assert response.headers["Allow"] == "POST"


async def test_allow_on_a_notification_lists_get(client: TestClient, partner: str) -> None:
    path = f"/partners/{partner}/notifications/{uuid.uuid4()}"
    response = await client.request("OPTIONS", path, headers=ADMIN)
    await problem(response, 405)
    assert response.headers["Allow"] == "GET"
