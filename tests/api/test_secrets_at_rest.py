"""Secrets at rest: what the database holds is sealed, the API still hands the partner its
secret, secrets from before encryption are sealed at start-up, and keys that cannot open what
is stored stop start-up."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.core.encryption import EncryptionKeyError, SecretUnreadable, generate_key
from service.core.settings import Settings
from service.core.stored_secrets import callback_row
from tests.support import postgres
from tests.support.api import create_partner, put_callback
from tests.support.keys import ENCRYPTION_KEYS, suite_keyring
from tests.support.settings import make_settings
from tests.support.tokens import auth

WRITE = auth("callbacks:write")


async def _reveal(client: TestClient, partner: str, notification_type: int) -> str:
    response = await client.get(
        f"/partners/{partner}/callbacks/{notification_type}/secret", headers=WRITE
    )
    assert response.status == 200, await response.text()
    secret: str = (await response.json())["signingSecret"]
    return secret


async def _stored(database: str, partner: str, notification_type: int) -> asyncpg.Record:
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT signing_secret, previous_secret FROM callbacks"
            " WHERE partner_id = $1 AND notification_type = $2",
            partner,
            notification_type,
        )
    finally:
        await connection.close()
    assert row is not None
    return row


async def test_a_database_dump_holds_no_secret_in_clear(client: TestClient, database: str) -> None:
    partner = await create_partner(client)
    secrets = [
        (await put_callback(client, partner, t, f"https://partner.example/{t}"))["signingSecret"]
        for t in (1, 2, 3)
    ]
    rotated = await client.post(f"/partners/{partner}/callbacks/1/secret/rotate", headers=WRITE)
    assert rotated.status == 200
    new_secret = (await rotated.json())["signingSecret"]
    secrets.append(new_secret)
    assert await _reveal(client, partner, 1) == new_secret  # the endpoint still returns it
    assert await _reveal(client, partner, 2) == secrets[1]

    dump = await asyncio.to_thread(postgres.pg_dump, database)

    assert "enc1:test1:" in dump  # the callbacks are in it, sealed
    assert "partner.example/3" in dump
    for secret in secrets:
        body = secret.removeprefix("whsec_")
        assert secret not in dump and body not in dump
        raw = base64.b64decode(body)
        assert raw.hex() not in dump  # nor as bytea
    assert ENCRYPTION_KEYS.split(":")[1] not in dump  # nor the key


async def test_the_previous_secret_is_sealed_too_and_bound_to_its_row(
    client: TestClient, database: str
) -> None:
    partner = await create_partner(client)
    first = (await put_callback(client, partner, 1))["signingSecret"]
    await put_callback(client, partner, 2)
    await client.post(f"/partners/{partner}/callbacks/1/secret/rotate", headers=WRITE)

    row = await _stored(database, partner, 1)
    keyring = suite_keyring()
    assert keyring.open(row["previous_secret"], callback_row(partner, 1)) == first
    # Copied into another callback's row, the ciphertext does not open there.
    with pytest.raises(SecretUnreadable):
        keyring.open(row["previous_secret"], callback_row(partner, 2))


async def test_secrets_stored_in_clear_before_encryption_are_sealed_at_start_up(
    database: str, settings: Settings, aiohttp_client: Any
) -> None:
    plaintext = "whsec_" + base64.b64encode(b"p" * 32).decode()
    connection = await asyncpg.connect(database)
    try:  # what an earlier version of callbackhub left in the table
        partner = await connection.fetchval(
            "INSERT INTO partners (id, name) VALUES (gen_random_uuid(), 'Old') RETURNING id"
        )
        await connection.execute(
            "INSERT INTO callbacks (partner_id, notification_type, url, signing_secret)"
            " VALUES ($1, 2, 'https://old.example/hook', $2)",
            partner,
            plaintext,
        )
    finally:
        await connection.close()

    client = await aiohttp_client(create_app(settings, database))

    row = await _stored(database, str(partner), 2)
    assert row["signing_secret"].startswith("enc1:test1:")
    assert plaintext.removeprefix("whsec_") not in row["signing_secret"]
    assert await _reveal(client, str(partner), 2) == plaintext


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (generate_key("other"), "sealed with key 'test1', which is not configured"),
        (generate_key("test1"), "key 'test1' does not open"),  # same id, another key
    ],
    ids=["unknown key id", "wrong key"],
)
async def test_keys_that_cannot_open_the_stored_secrets_stop_start_up(
    client: TestClient, database: str, tmp_path: Path, keys: str, message: str
) -> None:
    partner = await create_partner(client)
    await put_callback(client, partner, 1)
    app = create_app(make_settings(tmp_path, encryption_keys=keys), database)
    runner = web.AppRunner(app)
    with pytest.raises(EncryptionKeyError, match=message) as stopped:
        await runner.setup()
    assert "CALLBACKHUB_ENCRYPTION_KEYS" in str(stopped.value)
    await runner.cleanup()
