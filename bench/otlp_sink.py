"""A local OTLP/HTTP trace receiver for the tracing-on bench lines: it takes every export,
counts the spans' bytes, and answers as a collector does, so callbackhub pays the whole cost
of tracing (every request sampled) but the bench does not measure a collector.

``python -m bench.otlp_sink --port N``; ``GET /control/stats`` gives the exports received."""

from __future__ import annotations

import argparse

from aiohttp import web

STATS = {"exports": 0, "bytes": 0}


async def traces(request: web.Request) -> web.Response:
    body = await request.read()
    STATS["exports"] += 1
    STATS["bytes"] += len(body)
    return web.Response(body=b"", content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(STATS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/control/stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
