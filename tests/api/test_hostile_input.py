"""Hostile input (issue 4): payload abuse against echo and Callback Update, path abuse, and the
signing secret kept out of logs, error messages and the delivery log.

Each refusal must be a clean 4xx (problem+json where our code answers), store nothing (every table
is digested before and after), and leave the process healthy (ready, and a valid echo still
goes through).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from yarl import URL

from service.core.logs import ConsoleFormatter, JsonFormatter
from service.core.signing import secret_key
from tests.support.api import create_partner, problem, put_callback
from tests.support.polling import eventually
from tests.support.receiver import Receiver, status
from tests.support.state import Digest, changed_tables, digests
from tests.support.tokens import JWT_SECRET, auth, token

LIMIT = 256 * 1024
JSON_TYPE = {"Content-Type": "application/json"}
DEEP = 10_000
DIGITS = "1" * 10_000
HOOK = "https://example.com/hook"


def echo_payload(**fields: Any) -> dict[str, Any]:
    return {
        "processUniqueId": str(uuid.uuid4()),
        "statusId": 5,
        "statusDescription": "Under review",
        "changedAt": "2024-05-01T12:00:00Z",
        **fields,
    }


# Where the hostile bytes go. Callback Update targets type 1, whose callback exists (a mistaken
# update would change it), and type 2, which has none (a mistaken create would add a row).
TARGETS = {
    "echo": ("POST", "/partners/{partner}/callbacks/1/echo", "notifications:emit"),
    "update": ("PUT", "/partners/{partner}/callbacks/1", "callbacks:write"),
    "create": ("PUT", "/partners/{partner}/callbacks/2", "callbacks:write"),
}
STRING_FIELD = {"echo": "statusDescription", "update": "description", "create": "description"}
NUMBER_FIELD = {"echo": "statusId", "update": "enabled", "create": "enabled"}


def valid_body(target: str) -> dict[str, Any]:
    return echo_payload() if target == "echo" else {"url": HOOK, "description": "ok"}


def with_raw(target: str, field: str, raw_value: str) -> bytes:
    """The target's valid body with ``field`` set to ``raw_value``, spliced in as raw JSON."""
    body = {k: v for k, v in valid_body(target).items() if k != field}
    text = json.dumps(body)
    return f'{text[:-1]}, "{field}": {raw_value}}}'.encode()


def padded_to(target: str, size: int) -> bytes:
    """A valid-looking body of exactly ``size`` bytes (the string field is padded)."""
    empty = with_raw(target, STRING_FIELD[target], '""')
    return with_raw(target, STRING_FIELD[target], '"' + "x" * (size - len(empty)) + '"')


def hostile(target: str, case: str) -> bytes:
    string, number = STRING_FIELD[target], NUMBER_FIELD[target]
    valid = json.dumps(valid_body(target)).encode()
    match case:
        case "nested-arrays":
            return with_raw(target, string, "[" * DEEP + "]" * DEEP)
        case "nested-objects":
            return with_raw(target, string, '{"a":' * DEEP + "1" + "}" * DEEP)
        case "nested-top-level":
            return b"[" * DEEP + b"]" * DEEP
        case "over-256-kib":
            return padded_to(target, LIMIT + 1)
        case "invalid-utf8":
            return with_raw(target, string, '"caf').replace(b'"caf', b'"caf\xff\xfe"', 1)
        case "overlong-utf8":
            return with_raw(target, string, '"x"').replace(b'"x"', b'"\xc0\xaf"', 1)
        case "utf8-bom":
            return b"\xef\xbb\xbf" + valid
        case "utf16":
            return valid.decode().encode("utf-16")
        case "duplicate-keys":
            return with_raw(target, string, '"first"')[:-1] + f', "{string}": "second"}}'.encode()
        case "10000-digit-integer":
            return with_raw(target, number, DIGITS)
        case "10000-digit-float":
            return with_raw(target, number, DIGITS + ".5")
        case "10000-digit-exponent":
            return with_raw(target, number, "1e" + DIGITS)
        case "nan":
            return with_raw(target, number, "NaN")
        case "nul-escaped":
            return with_raw(target, string, '"before\\u0000after"')
        case "nul-in-key":
            return with_raw(target, "x\\u0000", "1")
        case "nul-raw":
            return with_raw(target, string, '"x"').replace(b'"x"', b'"\x00"', 1)
        case "lone-surrogate":
            return with_raw(target, string, '"\\ud800"')
        case "empty":
            return b""
        case "whitespace":
            return b" \r\n\t "
        case "truncated":
            return valid[:-1]
        case "trailing-garbage":
            return valid + b"garbage"
        case "array":
            return b"[" + valid + b"]"
        case "string":
            return b'"a string"'
        case "null":
            return b"null"
        case "number":
            return b"42"
        case "boolean":
            return b"true"
    raise AssertionError(case)


BAD_JSON = [
    "nested-arrays",
    "nested-objects",
    "nested-top-level",
    "invalid-utf8",
    "overlong-utf8",
    "utf8-bom",
    "utf16",
    "duplicate-keys",
    "10000-digit-integer",
    "10000-digit-float",
    "10000-digit-exponent",
    "nan",
    "nul-escaped",
    "nul-in-key",
    "nul-raw",
    "lone-surrogate",
    "empty",
    "whitespace",
    "truncated",
    "trailing-garbage",
    "array",
    "string",
    "null",
    "number",
    "boolean",
]


@pytest.fixture
async def registered(client: TestClient, partner: str) -> str:
    """A partner with a callback for type 1 (nothing delivers: ``client`` has no dispatcher)."""
    await put_callback(client, partner, 1, HOOK, status=201)
    return partner


@pytest.fixture
async def digest(database: str) -> AsyncIterator[Digest]:
    """Snapshots of every table of the test database, on one connection."""
    async with digests(database) as take:
        yield take


async def assert_healthy(client: TestClient, partner: str) -> None:
    """Ready, and a valid echo is still accepted."""
    assert (await client.get("/health/ready")).status == 200
    response = await client.post(
        f"/partners/{partner}/callbacks/1/echo",
        json=echo_payload(),
        headers=auth("notifications:emit"),
    )
    assert response.status == 202, await response.text()


async def send(
    client: TestClient, target: str, partner: str, data: Any, headers: dict[str, str]
) -> ClientResponse:
    method, path, scope = TARGETS[target]
    return await client.request(
        method, path.format(partner=partner), data=data, headers={**auth(scope), **headers}
    )


async def assert_refused(
    client: TestClient,
    digest: Digest,
    partner: str,
    target: str,
    data: Any,
    status: int,
    headers: dict[str, str] | None = None,
) -> None:
    before = await digest()
    response = await send(client, target, partner, data, headers or {})
    await problem(response, status)
    assert changed_tables(before, await digest()) == []
    await assert_healthy(client, partner)


# Each test runs its whole table against one target on one database (a fresh database per case
# would cost more than the cases themselves); failures name the case.
TARGET_NAMES = list(TARGETS)


@pytest.mark.parametrize("target", TARGET_NAMES)
async def test_malformed_json_is_a_clean_400(
    client: TestClient, digest: Digest, registered: str, target: str
) -> None:
    for case in BAD_JSON:
        body = hostile(target, case)
        try:
            await assert_refused(client, digest, registered, target, body, 400, JSON_TYPE)
        except AssertionError as error:
            raise AssertionError(f"{target} / {case}: {error}") from None


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 16 * 1024):
        yield body[start : start + 16 * 1024]


@pytest.mark.parametrize("target", TARGET_NAMES)
async def test_a_body_of_256_kib_plus_one_byte_is_413(
    client: TestClient, digest: Digest, registered: str, target: str
) -> None:
    """With a Content-Length, and chunked (no length to check up front: the limit holds while
    the body streams in)."""
    body = hostile(target, "over-256-kib")
    assert len(body) == LIMIT + 1
    await assert_refused(client, digest, registered, target, body, 413, JSON_TYPE)
    await assert_refused(client, digest, registered, target, _chunks(body), 413, JSON_TYPE)


async def test_a_body_of_exactly_256_kib_is_not_refused_for_its_size(
    client: TestClient, registered: str
) -> None:
    """The boundary: 256 KiB is read and validated (the padded field is then too long: 400)."""
    for target in TARGETS:
        body = padded_to(target, LIMIT)
        assert len(body) == LIMIT
        response = await send(client, target, registered, body, JSON_TYPE)
        await problem(response, 400)
        errors = (await response.json(content_type=None))["errors"]
        assert [error["field"] for error in errors] == [STRING_FIELD[target]]


NOT_JSON = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/octet-stream",
    "text/json",
    "application/jsonx",
    "application/x-json",
    "",
]


@pytest.mark.parametrize("target", TARGET_NAMES)
async def test_content_types_other_than_json_are_415(
    client: TestClient, digest: Digest, registered: str, target: str
) -> None:
    body = json.dumps(valid_body(target)).encode()  # the body is fine; its label is not
    for content_type in NOT_JSON:
        headers = {"Content-Type": content_type}
        try:
            await assert_refused(client, digest, registered, target, body, 415, headers)
        except AssertionError as error:
            raise AssertionError(f"{target} / {content_type!r}: {error}") from None
    form = aiohttp.FormData({"url": HOOK, "description": "a real form"})
    await assert_refused(client, digest, registered, target, form, 415)


async def test_the_same_bodies_done_right_are_accepted(client: TestClient, registered: str) -> None:
    """The control: the valid body every hostile case is built from goes through."""
    for target in TARGETS:
        body = json.dumps(valid_body(target))
        response = await send(client, target, registered, body, JSON_TYPE)
        assert response.status in (200, 201, 202), await response.text()


async def test_an_idempotency_key_that_is_not_utf8_is_a_clean_400(
    client: TestClient, digest: Digest, registered: str
) -> None:
    """Header bytes that are not UTF-8 reach the view as surrogates, which PostgreSQL cannot
    store: refused as a bad request (this was a 500)."""
    body = json.dumps(echo_payload()).encode()
    head = (
        f"POST /partners/{registered}/callbacks/1/echo HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        f"Authorization: Bearer {token('notifications:emit')}\r\n"
    ).encode()
    for key in (b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"):
        before = await digest()
        reader, writer = await asyncio.open_connection(client.host, client.port)
        try:
            writer.write(head + b"Idempotency-Key: " + key + b"\r\n\r\n" + body)
            answer = await reader.read()
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"400", answer
        assert b"application/problem+json" in rest
        assert changed_tables(before, await digest()) == []
    await assert_healthy(client, registered)


# Path abuse: the partner id and the notification type as an attacker writes them.
BAD_PARTNERS = [
    "not-a-uuid",
    "' OR 1=1 --",
    "1;DROP TABLE partners",
    "%00",
    "%2500",
    "%ff%fe",
    "..%2F..%2Fhealth%2Fready",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-0000000000000",
    "-1",
    "x" * 8000,
]
BAD_TYPES = [
    "1 OR 1=1",
    "1'--",
    "1;DROP TABLE callbacks",
    "-1",
    "0",
    "4",
    "1.0",
    "1e3",
    "0x1",
    "+1",
    "99999999999999999999",
    "%00",
    "1%00",
    "%EF%BC%91",  # a full-width digit one
]
PATH_OPERATIONS = [
    ("GET", "/partners/{partner}/callbacks", "callbacks:read"),
    ("GET", "/partners/{partner}/callbacks/{type}", "callbacks:read"),
    ("PUT", "/partners/{partner}/callbacks/{type}", "callbacks:write"),
    ("DELETE", "/partners/{partner}/callbacks/{type}", "callbacks:write"),
    ("POST", "/partners/{partner}/callbacks/{type}/echo", "notifications:emit"),
    ("GET", "/partners/{partner}/notifications", "deliveries:read"),
    ("GET", "/partners/{partner}", "partners:admin"),
    ("DELETE", "/partners/{partner}", "partners:admin"),
]


async def assert_path_refused(
    client: TestClient, digest: Digest, method: str, path: str, scope: str
) -> int:
    before = await digest()
    body = echo_payload() if path.endswith("/echo") else {"url": HOOK}
    response = await client.request(method, URL(path, encoded=True), json=body, headers=auth(scope))
    assert response.status in (400, 404), (method, path[:200], response.status)
    await problem(response, response.status)
    assert changed_tables(before, await digest()) == []
    return response.status


def _quoted(segment: str) -> str:
    """Spaces, quotes and semicolons percent-encoded, existing %XX kept: what a client sends."""
    return segment.replace(" ", "%20").replace("'", "%27").replace(";", "%3B")


async def test_a_malformed_partner_id_in_the_path_is_a_clean_4xx(
    client: TestClient, digest: Digest, registered: str
) -> None:
    for bad in BAD_PARTNERS:
        for method, template, scope in PATH_OPERATIONS:
            path = template.format(partner=_quoted(bad), type="1")
            await assert_path_refused(client, digest, method, path, scope)
    await assert_healthy(client, registered)


async def test_a_malformed_notification_type_in_the_path_is_a_clean_4xx(
    client: TestClient, digest: Digest, registered: str
) -> None:
    for bad in BAD_TYPES:
        for method, template, scope in PATH_OPERATIONS:
            if "{type}" in template:
                path = template.format(partner=registered, type=_quoted(bad))
                await assert_path_refused(client, digest, method, path, scope)
    await assert_healthy(client, registered)


async def test_hostile_query_strings_are_400(client: TestClient, registered: str) -> None:
    for query in (
        "limit=1'%20OR%201=1",
        "offset=%00",
        "limit=1e309",
        "limit=99999999999999999999",
        "offset=-1",
        "x=%ff",
    ):
        path = f"/partners/{registered}/callbacks?{query}"
        response = await client.get(URL(path, encoded=True), headers=auth("callbacks:read"))
        await problem(response, 400)


async def test_a_10_kb_path_is_a_clean_4xx(
    client: TestClient, digest: Digest, registered: str
) -> None:
    """aiohttp refuses request lines over 8190 bytes itself (a plain-text 400)."""
    path = f"/partners/{registered}/callbacks/1/" + "a" * 10_240
    before = await digest()
    for method in ("GET", "PUT", "DELETE", "POST"):
        response = await client.request(method, path, json={"url": HOOK}, headers=auth())
        assert 400 <= response.status < 500
    assert changed_tables(before, await digest()) == []
    await assert_healthy(client, registered)


# The signing secret stays where it belongs.


def secret_forms(secret: str) -> set[str]:
    """The ways a secret could leak: as given, its base64, the HMAC key in hex, repr and b64url."""
    key = secret_key(secret)
    return {
        secret,
        secret.removeprefix("whsec_"),
        key.hex(),
        repr(key)[2:-1],
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    }


def rendered_logs(records: list[logging.LogRecord]) -> str:
    """Every record as production would print it (JSON and console), plus all its attributes."""
    json_format, console_format = JsonFormatter(), ConsoleFormatter()
    lines = []
    for record in records:
        lines += [json_format.format(record), console_format.format(record), repr(record.__dict__)]
    return "\n".join(lines)


async def test_the_signing_secret_never_appears_in_logs_errors_or_the_delivery_log(
    client_with_dispatcher: TestClient,
    database: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = client_with_dispatcher
    receiver.responses = [status(500, body="try again")]
    partner = await create_partner(api, "Secretive")
    base = f"/partners/{partner}/callbacks/1"
    first_secret = (await put_callback(api, partner, 1, receiver.url))["signingSecret"]
    rotated = await api.post(f"{base}/secret/rotate", headers=auth("callbacks:write"))
    second_secret = (await rotated.json())["signingSecret"]
    secrets = secret_forms(first_secret) | secret_forms(second_secret)
    tokens = [token("partners:admin"), token("notifications:emit")]

    # Error messages: requests that carry the secret where it does not belong are refused
    # without repeating it.
    answers = [
        await api.put(
            base,
            json={"url": receiver.url, "signingSecret": first_secret},
            headers=auth("callbacks:write"),
        ),
        await api.put(base, json={"url": first_secret}, headers=auth("callbacks:write")),
        await api.post(
            f"{base}/echo",
            json=echo_payload(statusId=first_secret),
            headers=auth("notifications:emit"),
        ),
        await api.post(
            f"{base}/echo",
            data=f'{{"a": "{first_secret}", "a": 1}}',
            headers={**auth("notifications:emit"), **JSON_TYPE},
        ),
    ]
    for answer in answers:
        assert answer.status == 400
        text = await answer.text()
        assert not [form for form in secrets if form in text], text

    # A full cycle: echo, a failed attempt (500), the retry delivered with both signatures.
    echoed = await api.post(f"{base}/echo", json=echo_payload(), headers=auth("notifications:emit"))
    assert echoed.status == 202
    notification_id = (await echoed.json())["notificationId"]
    received = await receiver.wait_for(2)
    assert len(received[-1].headers["webhook-signature"].split(" ")) == 2

    async def detail() -> dict[str, Any]:
        response = await api.get(
            f"/partners/{partner}/notifications/{notification_id}",
            headers=auth("deliveries:read"),
        )
        body: dict[str, Any] = await response.json()
        return body

    log_entry = await eventually(detail, lambda body: body["status"] == "delivered")
    assert len(log_entry["attemptLog"]) == 2
    listing = await api.get(f"/partners/{partner}/notifications", headers=auth("deliveries:read"))
    delivery_log = json.dumps(log_entry) + await listing.text()
    assert not [form for form in secrets if form in delivery_log]

    connection = await asyncpg.connect(database)
    try:
        stored = await connection.fetch(
            "SELECT t::text AS row FROM delivery_attempts t "
            "UNION ALL SELECT t::text FROM deliveries t "
            "UNION ALL SELECT t::text FROM notifications t"
        )
    finally:
        await connection.close()
    stored_text = "\n".join(row["row"] for row in stored)
    assert not [form for form in secrets if form in stored_text]

    logs = rendered_logs(caplog.records)
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert not [form for form in secrets if form in logs]
    assert JWT_SECRET not in logs
    assert not [t for t in tokens if t in logs]
