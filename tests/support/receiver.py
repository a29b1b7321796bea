"""A partner's server: a real aiohttp app on 127.0.0.1, port 0, that records what it gets.

``responses`` scripts what it answers, one entry per request, then ``default`` forever.
Tests wait for requests with ``wait_for(count)``, which polls with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    path: str


def status(code: int, headers: dict[str, str] | None = None, body: str = "") -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers=headers, text=body)

    return respond


def hang() -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return respond


@dataclass
class Receiver:
    default: Responder = field(default_factory=lambda: status(200, body="ok"))
    responses: list[Responder] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(dict(request.headers), body, time.monotonic(), request.path))
        responder = self.responses.pop(0) if self.responses else self.default
        return await responder(request)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver got {len(self.received)} requests, expected {count}"
                )
            await asyncio.sleep(0.01)
        return self.received
