"""``callbackhub keys``: a new key is rotated in while deliveries run, and start-up refuses keys
that cannot open what is stored, in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
from standardwebhooks.webhooks import Webhook

from service.api.app import create_app
from service.core.encryption import generate_key, parse_keys
from service.server import build_app
from tests.support.api import create_partner, emit, payload, put_callback
from tests.support.cli import run
from tests.support.keys import ENCRYPTION_KEYS
from tests.support.processes import callbackhub_env
from tests.support.receiver import Receiver
from tests.support.settings import make_settings
from tests.support.tokens import auth

PARTNERS = 40
TYPES = (2, 3)  # unordered: every notification may go at once


async def test_keys_generate_prints_a_key_the_configuration_takes(tmp_path: Path) -> None:
    done = await run("keys", "generate", "--id", "2026-12", env=callbackhub_env("", tmp_path))
    assert done.returncode == 0, done.stderr
    keyring = parse_keys(done.stdout.strip(), "output")
    assert keyring.primary == "2026-12"


async def _stored_key_ids(database: str) -> set[str]:
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch(
            "SELECT split_part(signing_secret, ':', 2) AS key_id FROM callbacks"
        )
    finally:
        await connection.close()
    return {row["key_id"] for row in rows}


async def test_rotating_to_a_new_key_while_deliveries_run_loses_nothing(
    database: str, tmp_path: Path, aiohttp_client: Any, receiver: Receiver
) -> None:
    # Callbacks registered under the suite's key ("test1").
    old_api = await aiohttp_client(create_app(make_settings(tmp_path / "old"), database))
    secrets: dict[tuple[str, int], str] = {}
    partners = [await create_partner(old_api, f"P{i}") for i in range(PARTNERS)]
    for partner in partners:
        for notification_type in TYPES:
            created = await put_callback(old_api, partner, notification_type, receiver.url)
            secrets[partner, notification_type] = created["signingSecret"]
    await old_api.close()

    # Every process gets the new key first; then the secrets are re-sealed while it delivers.
    both = f"{generate_key('test2')},{ENCRYPTION_KEYS}"
    running = await aiohttp_client(
        build_app(
            make_settings(tmp_path / "new", encryption_keys=both), database, with_dispatcher=True
        )
    )
    emitted: dict[str, tuple[str, int]] = {}  # notification id -> its callback
    rotated = asyncio.Event()

    async def emit_until_rotated() -> None:
        count = 0
        while not rotated.is_set() or count < 2 * PARTNERS:
            partner = partners[count % PARTNERS]
            notification_type = TYPES[count % len(TYPES)]
            notification_id = await emit(
                running, partner, notification_type, payload(notification_type)
            )
            emitted[notification_id] = (partner, notification_type)
            count += 1

    emitting = asyncio.create_task(emit_until_rotated())
    await receiver.wait_for(PARTNERS)  # deliveries are under way
    env = callbackhub_env(database, tmp_path / "cli", encryption_keys=both)
    done = await run("keys", "rotate", env=env)
    rotated.set()
    await emitting

    assert done.returncode == 0, done.stderr
    total = PARTNERS * len(TYPES)
    assert f"re-sealed {total} callback(s) under key 'test2'; 0 left" in done.stdout
    assert f"{total}/{total}" in done.stderr  # the progress bar reached the end
    assert await _stored_key_ids(database) == {"test2"}

    received = await receiver.wait_for(len(emitted), timeout=60)
    by_id = {request.headers["webhook-id"]: request for request in received}
    assert set(by_id) == set(emitted)  # none lost
    for notification_id, callback in emitted.items():
        request = by_id[notification_id]
        Webhook(secrets[callback]).verify(request.body, request.headers)

    # The old key can go now: a service with only the new one starts and reveals the secrets.
    new_only = both.split(",")[0]
    app = create_app(make_settings(tmp_path / "after", encryption_keys=new_only), database)
    after = await aiohttp_client(app)
    response = await after.get(
        f"/partners/{partners[0]}/callbacks/{TYPES[-1]}/secret", headers=auth("callbacks:write")
    )
    assert (await response.json())["signingSecret"] == secrets[partners[0], TYPES[-1]]
    audit = await after.get("/audit-events?action=keys.rotated", headers=auth())
    [record] = (await audit.json())["items"]
    assert record["actor"]["type"] == "cli"
    assert record["details"] == {"keyId": "test2", "resealed": total, "left": 0}


async def test_serve_with_a_key_that_cannot_open_the_secrets_exits_with_one_line(
    client: Any, database: str, tmp_path: Path
) -> None:
    partner = await create_partner(client)
    await put_callback(client, partner, 1)
    env = callbackhub_env(database, tmp_path, encryption_keys=generate_key("k9"), port="0")

    done = await run("serve", env=env)

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert "sealed with key 'test1', which is not configured" in line
    assert "CALLBACKHUB_ENCRYPTION_KEYS" in line
    assert "Traceback" not in done.stderr


async def test_serve_on_a_configured_database_without_a_key_exits_naming_the_variable(
    database: str, tmp_path: Path
) -> None:
    env = callbackhub_env(database, tmp_path, port="0")
    env.pop("CALLBACKHUB_ENCRYPTION_KEYS")

    done = await run("serve", env=env)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "CALLBACKHUB_ENCRYPTION_KEYS is not set: with CALLBACKHUB_DATABASE_URL, give the key "
        "that seals stored secrets (make one with `callbackhub keys generate`)"
    ]
    assert not (tmp_path / "encryption-keys").exists()
