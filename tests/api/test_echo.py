"""Callback Echo: what is accepted, what is refused and why, and the Idempotency-Key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from service.core.schemas import EchoAccepted
from tests.support.api import (
    JSON,
    create_partner,
    emit,
    log_page,
    payload,
    post_echo,
    put_callback,
    validation_problem,
)
from tests.support.tokens import auth

TYPES = (1, 2, 3)
SUBJECTS = {"processUniqueId", "simulationUniqueId"}


@pytest.fixture
async def registered(client: TestClient, partner: str) -> str:
    """A partner with a callback for each of the three types (nothing delivers in ``client``)."""
    for notification_type in TYPES:
        await put_callback(client, partner, notification_type, "https://broker.example/hook")
    return partner


@pytest.mark.parametrize("notification_type", TYPES)
async def test_valid_payload_is_queued_and_logged(
    client: TestClient, registered: str, notification_type: int
) -> None:
    response = await post_echo(client, registered, notification_type, payload(notification_type))

    assert response.status == 202
    assert response.content_type == "application/json"
    accepted = await response.json()
    # The answer is written out by hand on this hot path; it must be the documented model.
    assert accepted == EchoAccepted.model_validate(accepted).dump()
    assert accepted["status"] == "queued"
    notification_id = str(uuid.UUID(accepted["notificationId"]))
    assert uuid.UUID(notification_id).version == 7  # time-ordered: see service/ids.py
    page = await log_page(client, registered)
    assert page["total"] == 1
    [item] = page["items"]
    assert item["notificationId"] == notification_id
    assert item["notificationType"] == notification_type
    assert item["status"] == "queued"
    assert item["attempts"] == 0


@pytest.mark.parametrize("notification_type", TYPES)
async def test_a_simulation_is_a_subject_too(
    client: TestClient, registered: str, notification_type: int
) -> None:
    body = payload(notification_type)
    body["simulationUniqueId"] = body.pop("processUniqueId")

    response = await post_echo(client, registered, notification_type, body)

    assert response.status == 202


@pytest.mark.parametrize("notification_type", TYPES)
async def test_both_subject_ids_are_refused_naming_both(
    client: TestClient, registered: str, notification_type: int
) -> None:
    body = payload(notification_type, simulationUniqueId=str(uuid.uuid4()))

    response = await post_echo(client, registered, notification_type, body)

    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert set(await validation_problem(response)) >= SUBJECTS
    assert (await log_page(client, registered))["total"] == 0


@pytest.mark.parametrize("notification_type", TYPES)
async def test_neither_subject_id_is_refused_naming_both(
    client: TestClient, registered: str, notification_type: int
) -> None:
    body = payload(notification_type)
    del body["processUniqueId"]

    response = await post_echo(client, registered, notification_type, body)

    assert response.status == 400
    assert set(await validation_problem(response)) >= SUBJECTS
    assert (await log_page(client, registered))["total"] == 0


@pytest.mark.parametrize(
    ("notification_type", "change", "field"),
    [
        (1, {"nickname": "x"}, "nickname"),
        (2, {"noteUniqueID": str(uuid.uuid4())}, "noteUniqueID"),
        (3, {"documentUniqueId": None}, "documentUniqueId"),
        (1, {"statusId": "5"}, "statusId"),
        (1, {"statusId": 5.5}, "statusId"),
        (1, {"changedAt": "2024-05-01T12:00:00"}, "changedAt"),
        (1, {"statusDescription": ""}, "statusDescription"),
        (1, {"processUniqueId": "not-a-uuid"}, "processUniqueId"),
        (2, {"subject": "x" * 201}, "subject"),
        (2, {"createdAt": "yesterday"}, "createdAt"),
        (3, {"action": "archived"}, "action"),
        (3, {"documentTypeId": "7"}, "documentTypeId"),
    ],
)
async def test_invalid_fields_are_named(
    client: TestClient, registered: str, notification_type: int, change: dict, field: str
) -> None:
    response = await post_echo(
        client, registered, notification_type, payload(notification_type, **change)
    )

    assert response.status == 400
    assert field in set(await validation_problem(response))


@pytest.mark.parametrize(
    ("notification_type", "missing"),
    [(1, "statusId"), (1, "changedAt"), (2, "text"), (2, "noteUniqueId"), (3, "fileName")],
)
async def test_missing_required_field_is_named(
    client: TestClient, registered: str, notification_type: int, missing: str
) -> None:
    body = payload(notification_type)
    del body[missing]

    response = await post_echo(client, registered, notification_type, body)

    assert response.status == 400
    assert missing in set(await validation_problem(response))


async def test_optional_fields_may_be_left_out(client: TestClient, registered: str) -> None:
    body = payload(1)
    del body["previousStatusId"]

    assert (await post_echo(client, registered, 1, body)).status == 202


async def test_unknown_partner_is_404(client: TestClient) -> None:
    response = await post_echo(client, str(uuid.uuid4()), 1, payload(1))

    assert response.status == 404
    assert "partner" in (await response.json())["detail"]


async def test_no_callback_for_the_type_is_404(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")

    response = await post_echo(client, partner, 2, payload(2))

    assert response.status == 404
    assert "callback" in (await response.json())["detail"]


async def test_disabled_callback_is_409(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook", enabled=False)

    response = await post_echo(client, partner, 1, payload(1))

    assert response.status == 409
    assert (await log_page(client, partner))["total"] == 0


async def test_body_over_256_kib_is_413(client: TestClient, registered: str) -> None:
    body = json.dumps(payload(2, text="x" * (256 * 1024))).encode()

    response = await post_echo(client, registered, 2, body)

    assert response.status == 413
    assert (await log_page(client, registered))["total"] == 0


async def test_streamed_body_over_256_kib_is_413(client: TestClient, registered: str) -> None:
    """Without a Content-Length the limit still holds while reading."""
    body = json.dumps(payload(2, text="x" * (256 * 1024))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    response = await client.post(
        f"/partners/{registered}/callbacks/2/echo",
        data=chunks(),
        headers={**auth("notifications:emit"), **JSON},
    )

    assert response.status == 413
    assert (await log_page(client, registered))["total"] == 0


@pytest.mark.parametrize(("size", "status"), [(256 * 1024, 202), (256 * 1024 + 1, 413)])
async def test_the_limit_is_256_kib_exactly(
    client: TestClient, registered: str, size: int, status: int
) -> None:
    body = json.dumps(payload(2)).encode()
    body += b" " * (size - len(body))  # insignificant whitespace, still a valid payload

    response = await post_echo(client, registered, 2, body)

    assert response.status == status


# Idempotency-Key.


async def test_concurrent_repeats_of_a_key_queue_one(client: TestClient, registered: str) -> None:
    body = json.dumps(payload(1)).encode()

    answers = await asyncio.gather(
        *(post_echo(client, registered, 1, body, key="same") for _ in range(10))
    )

    assert {answer.status for answer in answers} == {202}
    ids = {(await answer.json())["notificationId"] for answer in answers}
    assert len(ids) == 1
    assert (await log_page(client, registered))["total"] == 1


async def test_same_key_with_another_body_is_409(client: TestClient, registered: str) -> None:
    await emit(client, registered, 1, payload(1), key="k-1")

    response = await post_echo(client, registered, 1, payload(1), key="k-1")

    assert response.status == 409
    assert (await log_page(client, registered))["total"] == 1


@pytest.mark.parametrize(("length", "status"), [(200, 202), (201, 400)])
async def test_key_length_limit(
    client: TestClient, registered: str, length: int, status: int
) -> None:
    response = await post_echo(client, registered, 1, payload(1), key="k" * length)

    assert response.status == status


async def test_empty_key_is_400(client: TestClient, registered: str) -> None:
    response = await post_echo(client, registered, 1, payload(1), key="")

    assert response.status == 400


async def test_the_same_key_for_two_partners_is_independent(client: TestClient) -> None:
    partners = [await create_partner(client, name) for name in ("Acme", "Globex")]
    for partner in partners:
        await put_callback(client, partner, 1, "https://broker.example/hook")
    body = json.dumps(payload(1)).encode()

    ids = [await emit(client, partner, 1, body, key="shared-key") for partner in partners]

    assert ids[0] != ids[1]
    for partner, notification_id in zip(partners, ids, strict=True):
        [item] = (await log_page(client, partner))["items"]
        assert item["notificationId"] == notification_id
