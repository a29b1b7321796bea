"""An operational event outlives a ``kill -9`` of ``serve`` between its cause and its delivery:
the event was committed with the change, so the restarted process delivers it."""

from __future__ import annotations

import json

import aiohttp
from standardwebhooks.webhooks import Webhook

from tests.support import processes
from tests.support.fleet import Fleet
from tests.support.receiver import Receiver, hang
from tests.support.tokens import auth


async def test_an_event_in_flight_when_serve_is_killed_is_delivered_after_restart(
    database: str, fleet: Fleet
) -> None:
    inbox = await fleet.receiver(Receiver(default=hang()))  # the first attempt never answers
    env = processes.callbackhub_env(database, fleet.logs / "data")
    api = await processes.start(fleet.add(processes.serve("api", env, fleet.logs)))
    async with aiohttp.ClientSession() as http:
        answer = await http.put(
            f"{api.url}/operator/webhook", json={"url": inbox.url}, headers=auth()
        )
        assert answer.status == 201
        secret = (await answer.json())["signingSecret"]
        answer = await http.post(f"{api.url}/partners", json={"name": "Acme"}, headers=auth())
        partner = (await answer.json())["partnerUniqueId"]
        answer = await http.put(
            f"{api.url}/partners/{partner}/callbacks/2",
            json={"url": "https://crm.acme.example/hooks"},
            headers=auth(),
        )
        assert answer.status == 201

    [in_flight] = await inbox.wait_for(1)  # callback.created is on the wire, unanswered
    api.kill()
    inbox.default = Receiver().default  # back to answering 200
    await processes.restart(api)

    received = await inbox.wait_for(2, timeout=30)
    again = received[-1]
    assert again.headers["webhook-id"] == in_flight.headers["webhook-id"]
    event = Webhook(secret).verify(again.body, again.headers)
    assert event["type"] == "callback.created"
    assert json.loads(again.body)["data"]["partnerUniqueId"] == partner
