"""H: the ceiling of one aiohttp process. A bare handler that reads the echo's JSON body,
parses it and answers 202 with a small JSON body, on the echo's path; nothing else.

``python -m bench.bare --port N [--loop asyncio|uvloop]``: one process, on the standard asyncio
loop by default (H, the ceiling), or on uvloop (shown beside it, for what the loop alone gives).
"""

from __future__ import annotations

import argparse
import json
import uuid

from aiohttp import web

from service.core.runtime import loop_factory


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    json.loads(body)
    return web.json_response({"notificationId": str(uuid.uuid4())}, status=202)


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/partners/{partner}/callbacks/{type}/echo", echo)
    app.router.add_get("/health/ready", ready)
    loop = loop_factory(args.loop)()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
