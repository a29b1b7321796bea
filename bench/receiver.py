"""The partner's server in the bench: answers 200 to every POST and counts what it got.

A separate process (``python -m bench.receiver --port N``), plain asyncio like the
dispatcher. It counts requests and distinct ``webhook-id`` values and keeps the wall-clock
time of the first and last one; with ``POST /control/record`` on it also keeps each id's first
arrival time, for the end-to-end latency. ``GET /control/stats`` and ``/control/arrivals``
read them, ``POST /control/reset`` starts over. ``POST /oauth/token`` is an OAuth2 token endpoint.
"""

from __future__ import annotations

import argparse
import time

from aiohttp import web

OK = web.Response  # answered fresh each time: a Response cannot be sent twice


class Counts:
    def __init__(self) -> None:
        self.reset(record=False)

    def reset(self, record: bool) -> None:
        self.requests = 0
        self.tokens = 0
        self.ids: set[str] = set()
        self.first = 0.0
        self.last = 0.0
        self.record = record
        self.arrivals: dict[str, float] = {}

    def stats(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "unique": len(self.ids),
            "first": self.first,
            "last": self.last,
        }


def create_app() -> web.Application:
    counts = Counts()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id not in counts.ids:
            counts.ids.add(webhook_id)
            if counts.record:
                counts.arrivals[webhook_id] = now
        if not counts.requests:
            counts.first = now
        counts.last = now
        counts.requests += 1
        return web.Response(text="ok")

    async def token(request: web.Request) -> web.Response:
        """An OAuth2 token endpoint, for the delivery-options step: one token per client."""
        await request.read()
        counts.tokens += 1
        body = {"access_token": f"bench-token-{counts.tokens}", "expires_in": 3600}
        return web.json_response(body)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counts.stats())

    async def arrivals(request: web.Request) -> web.Response:
        return web.json_response(counts.arrivals)

    async def reset(request: web.Request) -> web.Response:
        counts.reset(record=request.query.get("record") == "1")
        return web.json_response(counts.stats())

    app = web.Application()
    app.router.add_get("/control/stats", stats)
    app.router.add_get("/control/arrivals", arrivals)
    app.router.add_post("/control/reset", reset)
    app.router.add_post("/oauth/token", token)
    app.router.add_post("/{tail:.*}", hook)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
