"""Signatures and signing secrets, checked with the real ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.core.signing import new_signing_secret, sign, signature_header

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
