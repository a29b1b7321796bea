"""Per-callback delivery options against a real receiver: custom headers, Basic and Bearer
authentication, and Ed25519 signatures; the secrets stored sealed and shown masked."""

from __future__ import annotations

import base64

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from service.core import stored_secrets
from service.core.database import create_pool
from service.core.delivery_options import open_credentials
from service.core.encryption import generate_key, parse_keys
from service.core.settings import Settings
from tests.support.api import (
    create_partner,
    emit,
    payload,
    put_callback,
    settled,
    validation_problem,
)
from tests.support.keys import ENCRYPTION_KEYS
from tests.support.receiver import Receiver
from tests.support.tokens import auth

HEADERS = {"X-Api-Key": "k-5f3a9c1e77", "X-Tenant": "acme-brokers"}


async def _stored(database: str, partner: str, notification_type: int) -> asyncpg.Record:
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT delivery_options::text AS options, sealed_credentials FROM callbacks"
            " WHERE partner_id = $1 AND notification_type = $2",
            partner,
            notification_type,
        )
    finally:
        await connection.close()
    assert row is not None
    return row


async def test_headers_arrive_as_configured_and_are_stored_sealed_and_shown_masked(
    client_with_dispatcher: TestClient, receiver: Receiver, database: str
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    created = await put_callback(client, partner, 2, receiver.url, headers=HEADERS)
    assert created["headers"] == {"X-Api-Key": "••••", "X-Tenant": "••••"}
    notification = await emit(client, partner, 2, payload(2))
    await settled(client, partner, notification, "delivered")

    [received] = receiver.received
    assert {name: received.headers[name] for name in HEADERS} == HEADERS
    Webhook(created["signingSecret"]).verify(received.body, received.headers)
    row = await _stored(database, partner, 2)
    for value in HEADERS.values():
        assert value not in row["options"] and value not in row["sealed_credentials"]
    assert row["sealed_credentials"].startswith("enc1:test1:")
    listed = await client.get(f"/partners/{partner}/callbacks", headers=auth())
    assert "k-5f3a9c1e77" not in await listed.text()


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Content-Type": "text/plain"}, "headers.Content-Type"),
        ({"webhook-id": "forged"}, "headers.webhook-id"),
        ({"User-Agent": "me"}, "headers.User-Agent"),
        ({"traceparent": "00-x"}, "headers.traceparent"),
        ({"bad name": "x"}, "headers.bad name"),
        ({"X-Line": "a\r\nInjected: yes"}, "headers.X-Line"),
        ({"X-A": "1", "x-a": "2"}, "headers.x-a"),
    ],
)
async def test_a_header_callbackhub_sets_or_a_malformed_one_is_refused_naming_it(
    client: TestClient, partner: str, headers: dict[str, str], field: str
) -> None:
    response = await client.put(
        f"/partners/{partner}/callbacks/2",
        json={"url": "https://partner.example/hook", "headers": headers},
        headers=auth(),
    )
    assert field in await validation_problem(response)
    missing = await client.get(f"/partners/{partner}/callbacks/2", headers=auth())
    assert missing.status == 404  # nothing was stored


async def test_authorization_is_refused_as_a_header_when_auth_is_set(
    client: TestClient, partner: str
) -> None:
    body = {
        "url": "https://partner.example/hook",
        "headers": {"Authorization": "Basic eA=="},
        "auth": {"type": "bearer", "token": "t0k3n"},
    }
    response = await client.put(f"/partners/{partner}/callbacks/2", json=body, headers=auth())
    assert "headers.Authorization" in await validation_problem(response)


async def test_basic_and_bearer_credentials_arrive_and_options_left_out_are_kept(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    basic = {"type": "basic", "username": "crm", "password": "s3cr3t:with:colons"}
    created = await put_callback(client, partner, 2, receiver.url, auth=basic)
    assert created["auth"] == {"type": "basic", "username": "crm", "password": "••••"}
    await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
    expected = base64.b64encode(b"crm:s3cr3t:with:colons").decode()
    assert receiver.received[-1].headers["Authorization"] == f"Basic {expected}"

    # A change that leaves auth out keeps it; a bearer token replaces it; null removes it.
    kept = await put_callback(client, partner, 2, receiver.url, description="CRM")
    assert kept["auth"] == created["auth"]
    bearer = await put_callback(
        client, partner, 2, receiver.url, auth={"type": "bearer", "token": "eyJhbGciOi.x.y"}
    )
    assert bearer["auth"] == {"type": "bearer", "token": "••••"}
    await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
    assert receiver.received[-1].headers["Authorization"] == "Bearer eyJhbGciOi.x.y"
    removed = await put_callback(client, partner, 2, receiver.url, auth=None)
    assert removed["auth"] is None
    await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
    assert "Authorization" not in receiver.received[-1].headers

    history = await client.get(f"/partners/{partner}/audit-events?limit=100", headers=auth())
    text = await history.text()
    assert "s3cr3t" not in text and "eyJhbGciOi" not in text
    assert '"secretsChanged": ["authorization"]' in text


def _v1a_signatures(header: str) -> list[bytes]:
    return [base64.b64decode(part[4:]) for part in header.split() if part.startswith("v1a,")]


def _verifies(public_key: str, signature: bytes, received: object) -> bool:
    headers = received.headers  # type: ignore[attr-defined]
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode()
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    try:
        key.verify(signature, signed + received.body)  # type: ignore[attr-defined]
    except InvalidSignature:
        return False
    return True


async def test_ed25519_signatures_verify_with_the_public_key_also_across_a_rotation(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    created = await put_callback(client, partner, 2, receiver.url, signature="ed25519")
    assert created["signingSecret"] is None  # the private key never leaves callbackhub
    first_key = created["publicKey"]
    assert created["signature"] == "ed25519" and first_key.startswith("whpk_")
    await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
    [signature] = _v1a_signatures(receiver.received[-1].headers["webhook-signature"])
    assert _verifies(first_key, signature, receiver.received[-1])

    secret = await client.get(f"/partners/{partner}/callbacks/2/secret", headers=auth())
    assert secret.status == 409
    rotated = await client.post(f"/partners/{partner}/callbacks/2/secret/rotate", headers=auth())
    body = await rotated.json()
    assert body["signingSecret"] is None and body["publicKey"] not in (None, first_key)
    await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
    during = receiver.received[-1]
    signatures = _v1a_signatures(during.headers["webhook-signature"])
    assert len(signatures) == 2
    assert _verifies(body["publicKey"], signatures[0], during)
    assert _verifies(first_key, signatures[1], during)
    assert not _verifies(first_key, signatures[0], during)


async def test_switching_an_hmac_callback_to_ed25519_keeps_both_signing_for_the_overlap(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    hmac_secret = (await put_callback(client, partner, 2, receiver.url))["signingSecret"]
    switched = await put_callback(client, partner, 2, receiver.url, signature="ed25519")
    assert switched["signature"] == "ed25519" and switched["publicKey"].startswith("whpk_")
    await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
    received = receiver.received[-1]
    kinds = [part.split(",")[0] for part in received.headers["webhook-signature"].split()]
    assert kinds == ["v1a", "v1"]
    Webhook(hmac_secret).verify(received.body, received.headers)  # the old one, for the overlap
    [signature] = _v1a_signatures(received.headers["webhook-signature"])
    assert _verifies(switched["publicKey"], signature, received)


async def test_key_rotation_reseals_the_credentials_too(
    client: TestClient, partner: str, database: str, settings: Settings
) -> None:
    await put_callback(client, partner, 2, "https://partner.example/hook", headers=HEADERS)
    both = parse_keys(f"{generate_key('next')},{ENCRYPTION_KEYS}", "test")
    pool = await create_pool(database, settings)
    try:
        assert await stored_secrets.count_to_reseal(pool, both) == 1
        assert await stored_secrets.reseal(pool, both) == 1
        assert await stored_secrets.count_to_reseal(pool, both) == 0
    finally:
        await pool.close()
    row = await _stored(database, partner, 2)
    assert row["sealed_credentials"].startswith("enc1:next:")
    assert open_credentials(both, row["sealed_credentials"], partner, 2).headers == HEADERS
