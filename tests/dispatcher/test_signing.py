"""Signatures (checked with the real ``standardwebhooks`` package), secret rotation, and the
retry policy's arithmetic."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher.retry import RetryPolicy, parse_retry_after
from service.core.signing import new_signing_secret, sign, signature_header
from tests.conftest import auth
from tests.dispatcher.scenario import create_partner, emit, payload, put_callback, settled
from tests.support.receiver import Receiver

MESSAGE_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _headers(message_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


# Signing, against the reference implementation.


def test_signature_matches_the_reference_implementation() -> None:
    body = b'{"test": 2432232314}'
    timestamp = int(datetime.now(UTC).timestamp())
    reference = Webhook(SECRET).sign(
        MESSAGE_ID, datetime.fromtimestamp(timestamp, UTC), body.decode()
    )

    assert sign(SECRET, MESSAGE_ID, timestamp, body) == reference


def test_standardwebhooks_verifies_a_signature() -> None:
    body = '{"processUniqueId": "caf\\u00e9", "x": "é"}'.encode()
    timestamp = int(datetime.now(UTC).timestamp())
    header = signature_header([SECRET], MESSAGE_ID, timestamp, body)

    assert Webhook(SECRET).verify(body, _headers(MESSAGE_ID, timestamp, header)) == json.loads(body)


def test_a_changed_body_or_id_does_not_verify() -> None:
    body = b'{"a": 1}'
    timestamp = int(datetime.now(UTC).timestamp())
    header = signature_header([SECRET], MESSAGE_ID, timestamp, body)

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"a": 2}', _headers(MESSAGE_ID, timestamp, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, _headers("msg_other", timestamp, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(body, _headers(MESSAGE_ID, timestamp, header))


def test_the_key_is_the_decoded_secret_after_the_prefix() -> None:
    raw = bytes(range(32))
    secret = "whsec_" + base64.b64encode(raw).decode()
    header = sign(secret, "id", 1, b"{}")

    assert header == Webhook(raw).sign("id", datetime.fromtimestamp(1, UTC), "{}")


def test_two_secrets_give_two_space_separated_signatures() -> None:
    old, new = new_signing_secret(), new_signing_secret()
    timestamp = int(datetime.now(UTC).timestamp())
    header = signature_header([new, old], MESSAGE_ID, timestamp, b"{}")

    parts = header.split(" ")
    assert len(parts) == 2
    assert all(part.startswith("v1,") for part in parts)
    for secret in (old, new):
        Webhook(secret).verify(b"{}", _headers(MESSAGE_ID, timestamp, header))


def test_new_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_signing_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_signing_secret() != secret


# Rotation, end to end.


async def test_after_rotation_both_secrets_verify(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    old = (await put_callback(client, partner, 1, receiver.url))["signingSecret"]
    before = await emit(client, partner, 1, payload(1))
    await settled(client, partner, before, "delivered")

    response = await client.post(
        f"/partners/{partner}/callbacks/1/secret/rotate", headers=auth("callbacks:write")
    )
    assert response.status == 200
    new = (await response.json())["signingSecret"]
    after = await emit(client, partner, 1, payload(1))
    await settled(client, partner, after, "delivered")

    first, second = receiver.received
    assert new != old
    assert len(first.headers["webhook-signature"].split(" ")) == 1
    Webhook(old).verify(first.body, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(first.body, first.headers)
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(second.body, second.headers)
    Webhook(new).verify(second.body, second.headers)


async def test_rotation_needs_callbacks_write(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")
    path = f"/partners/{partner}/callbacks/1/secret/rotate"

    assert (await client.post(path, headers=auth("callbacks:read"))).status == 403
    assert (
        await client.post(
            f"/partners/{partner}/callbacks/2/secret/rotate", headers=auth("callbacks:write")
        )
    ).status == 404


# The retry policy.


def test_schedule_gives_the_attempt_budget() -> None:
    policy = RetryPolicy((1.0, 2.0, 3.0), jitter=0.0)

    assert policy.max_attempts == 4
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]


def test_jitter_stays_within_twenty_percent() -> None:
    policy = RetryPolicy((100.0,), jitter=0.2)

    delays = [policy.delay(1) for _ in range(500)]

    assert all(80.0 <= delay <= 120.0 for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(100.0, 20.0), (15.0, 15.0), (0.0, 10.0), (3.0, 10.0)]
)
def test_retry_after_is_clamped_to_one_to_two_times_the_schedule(
    retry_after: float, expected: float
) -> None:
    policy = RetryPolicy((10.0, 60.0), jitter=0.2)

    assert policy.delay(1, retry_after) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("", None), (None, None), ("soon", None), ("-5", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)

    assert parse_retry_after(later, now) == 90.0
    assert parse_retry_after(earlier, now) == 0.0
