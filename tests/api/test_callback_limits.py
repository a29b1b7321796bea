"""maxInFlight and maxPerSecond on Callback Update: shown in the callback object, kept when
left out, reset by null, refused out of range with the field named, and audited."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api import put_callback, validation_problem
from tests.support.tokens import auth


async def test_limits_are_set_kept_when_left_out_and_reset_by_null(
    client: TestClient, partner: str
) -> None:
    created = await put_callback(client, partner, 2, "https://crm.example/hook")
    assert (created["maxInFlight"], created["maxPerSecond"]) == (None, None)

    limited = await put_callback(
        client, partner, 2, "https://crm.example/hook", maxInFlight=3, maxPerSecond=200
    )
    assert (limited["maxInFlight"], limited["maxPerSecond"]) == (3, 200.0)

    kept = await put_callback(client, partner, 2, "https://crm.example/v2", description="v2")
    assert (kept["maxInFlight"], kept["maxPerSecond"]) == (3, 200.0)

    reset = await put_callback(client, partner, 2, "https://crm.example/v2", maxPerSecond=None)
    assert (reset["maxInFlight"], reset["maxPerSecond"]) == (3, None)

    listed = await client.get(f"/partners/{partner}/callbacks", headers=auth())
    [shown] = (await listed.json())["items"]
    assert (shown["maxInFlight"], shown["maxPerSecond"]) == (3, None)

    events = await client.get(
        f"/audit-events?partnerUniqueId={partner}&action=callback.updated", headers=auth()
    )
    changes = [item["details"]["changes"] for item in (await events.json())["items"]]
    assert {"before": 200.0, "after": None} in [c.get("maxPerSecond") for c in changes]
    assert {"before": None, "after": 3} in [c.get("maxInFlight") for c in changes]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("maxInFlight", 0),
        ("maxInFlight", 257),
        ("maxInFlight", 2.5),
        ("maxPerSecond", 0.05),
        ("maxPerSecond", 10001),
        ("maxPerSecond", "fast"),
    ],
)
async def test_a_limit_out_of_range_is_refused_naming_the_field_and_changes_nothing(
    client: TestClient, partner: str, field: str, value: object
) -> None:
    await put_callback(client, partner, 2, "https://crm.example/hook", maxInFlight=5)
    response = await client.put(
        f"/partners/{partner}/callbacks/2",
        json={"url": "https://crm.example/hook", field: value},
        headers=auth("callbacks:write"),
    )
    assert field in await validation_problem(response)
    current = await client.get(f"/partners/{partner}/callbacks/2", headers=auth())
    assert (await current.json())["maxInFlight"] == 5
