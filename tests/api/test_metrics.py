"""/metrics: Prometheus text with the counters the operators rely on."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.support.tokens import auth


async def _metrics(client: TestClient) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    return await response.text()


def _value(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


async def test_metrics_count_requests_and_queue(client: TestClient, partner: str) -> None:
    await client.put(
        f"/partners/{partner}/callbacks/2",
        json={"url": "https://example.com/hook"},
        headers=auth("callbacks:write"),
    )
    before = _value(
        await _metrics(client), 'callbackhub_notifications_accepted_total{notification_type="2"'
    )
    response = await client.post(
        f"/partners/{partner}/callbacks/2/echo",
        json={
            "simulationUniqueId": "8e6a1a8c-56b6-4b0e-9d3a-3f0c2f0e9d11",
            "noteUniqueId": "0b5c1d5e-7d1e-4f5e-8c1d-2a3b4c5d6e7f",
            "subject": "s",
            "text": "t",
            "createdAt": "2026-01-01T00:00:00Z",
        },
        headers=auth("notifications:emit"),
    )
    assert response.status == 202
    text = await _metrics(client)
    accepted = _value(text, 'callbackhub_notifications_accepted_total{notification_type="2"')
    assert accepted == before + 1
    assert 'callbackhub_queue_depth{state="due"} 1.0' in text
    assert 'route="/partners/{partnerUniqueID}/callbacks/{notificationTypeID}/echo"' in text
    assert partner not in text  # no partner-identifying labels by default


async def test_unknown_methods_share_one_label(client: TestClient) -> None:
    """Any token is a valid method; a client inventing methods must not add series."""
    for method in ("PROPFIND", "MKCOL"):
        response = await client.request(method, "/health/live")
        assert response.status == 405
    text = await _metrics(client)
    assert 'callbackhub_http_requests_total{method="other",' in text
    assert "PROPFIND" not in text and "MKCOL" not in text


async def test_a_replayed_echo_counts_as_a_replay_not_as_a_stored_notification(
    client: TestClient, partner: str
) -> None:
    await client.put(
        f"/partners/{partner}/callbacks/2",
        json={"url": "https://example.com/hook"},
        headers=auth("callbacks:write"),
    )
    body = {
        "processUniqueId": "5d2f3a1e-7b44-4c1e-9a0f-1b2c3d4e5f60",
        "noteUniqueId": "0b5c1d5e-7d1e-4f5e-8c1d-2a3b4c5d6e7f",
        "subject": "s",
        "text": "t",
        "createdAt": "2026-01-01T00:00:00Z",
    }
    accepted = 'callbackhub_notifications_accepted_total{notification_type="2"'
    replayed = 'callbackhub_notifications_replayed_total{notification_type="2"'
    before = await _metrics(client)
    headers = {**auth("notifications:emit"), "Idempotency-Key": "order-42"}
    ids = set()
    for _ in range(3):
        response = await client.post(
            f"/partners/{partner}/callbacks/2/echo", json=body, headers=headers
        )
        assert response.status == 202
        ids.add((await response.json())["notificationId"])
    after = await _metrics(client)
    assert len(ids) == 1
    assert _value(after, accepted) == _value(before, accepted) + 1
    assert _value(after, replayed) == _value(before, replayed) + 2
