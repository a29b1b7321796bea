"""A request id ties a log line to the request and to the audit record of what it changed."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from tests.support.fleet import Fleet
from tests.support.processes import callbackhub_env, serve
from tests.support.tokens import auth


async def test_the_request_id_is_in_the_response_the_json_log_and_the_audit_record(
    fleet: Fleet, database: str, tmp_path: Path
) -> None:
    env = callbackhub_env(database, tmp_path, log_format="json")
    server = fleet.add(serve("api", env, fleet.logs, dispatcher=False))
    await server.spawn().wait_ready()

    async with aiohttp.ClientSession(base_url=server.url, headers=auth()) as http:
        async with http.post("/partners", json={"name": "Traced"}) as response:
            partner = (await response.json())["partnerUniqueId"]
            generated = response.headers["X-Request-Id"]
        callback = f"/partners/{partner}/callbacks/2"
        async with http.put(callback, json={"url": "https://traced.example/hook"}) as response:
            assert response.status == 201
        disable = {"url": "https://traced.example/hook", "enabled": False}
        headers = {"X-Request-Id": "trace-me-1"}
        async with http.put(callback, json=disable, headers=headers) as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"] == "trace-me-1"
        odd = {"X-Request-Id": "not a sane id <script>"}
        async with http.get("/partners", headers=odd) as response:
            assert response.headers["X-Request-Id"] != odd["X-Request-Id"]
        async with http.get(f"/audit-events?partnerUniqueId={partner}") as response:
            records = (await response.json())["items"]

    assert len(generated) == 32
    assert [r["requestId"] for r in records if r["action"] == "callback.disabled"] == ["trace-me-1"]
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    disabled = [line for line in lines if line["message"] == "callback_disabled"]
    assert [line.get("request_id") for line in disabled] == ["trace-me-1"]
