"""Every attempt ends recorded, whatever it raised inside callbackhub.

An attempt that raised before or around the request used to go unrecorded: its delivery was
claimed again at every lease expiry, forever, with nothing in the attempt log.
"""

from __future__ import annotations

import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.core.settings import Settings
from service.core.stored_secrets import callback_row
from tests.support.api import create_partner, emit, payload, put_callback, settled
from tests.support.keys import suite_keyring
from tests.support.receiver import Receiver


async def test_a_malformed_stored_secret_fails_the_delivery_after_its_attempts(
    client_with_dispatcher: TestClient,
    database: str,
    settings: Settings,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    connection = await asyncpg.connect(database)
    try:  # not base64 after the prefix: signing raises while the request is being built
        malformed = suite_keyring().seal("whsec_abc", callback_row(partner, 2))
        await connection.execute("UPDATE callbacks SET signing_secret = $1", malformed)
    finally:
        await connection.close()

    with caplog.at_level(logging.ERROR, logger="dispatcher.worker"):
        notification_id = await emit(client, partner, 2, payload(2))
        detail = await settled(client, partner, notification_id, "failed")

    assert detail["failureReason"] == "internal_error"
    assert detail["attempts"] == settings.max_attempts
    assert [a["attempt"] for a in detail["attemptLog"]] == list(range(1, settings.max_attempts + 1))
    assert {a["error"] for a in detail["attemptLog"]} == {"internal_error: Error"}
    assert {a["responseStatus"] for a in detail["attemptLog"]} == {None}
    assert receiver.received == []  # nothing half-signed ever left
    tracebacks = [r for r in caplog.records if r.exc_info and "inside callbackhub" in r.message]
    assert len(tracebacks) == settings.max_attempts
    assert "whsec_abc" not in caplog.text
