"""Delivery through the URL guard: a blocked destination fails the attempt with blocked_address
before any connection is made, DNS rebinding cannot redirect a connection, redirects are not
followed, and what partners send back is capped in size and in time.

The API (``client``) runs with the test settings (127.0.0.0/8 and ::1 allowed), so receivers on
127.0.0.1 can be registered; each test starts its own dispatcher with the guard settings it needs.
Every address used is on the loopback interface: a broken guard could only ever reach the test's
own listeners, where it is caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_network

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dispatcher.sender import RESPONSE_BODY_LIMIT
from tests.support.api import emit, notification, payload, put_callback, settled
from tests.support.fixtures import StartDispatcher
from tests.support.polling import eventually
from tests.support.receiver import Receiver, status
from tests.support.scripted_dns import ScriptedDns


@dataclass
class ConnectionCounter:
    """A TCP listener that only counts the connections made to it (and closes them)."""

    host: str = "127.0.0.1"
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> ConnectionCounter:
        self._server = await asyncio.start_server(self._count, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[ConnectionCounter]:
    counter = await ConnectionCounter().start()
    yield counter
    await counter.stop()


async def _deliver_one(client: TestClient, partner: str, url: str) -> str:
    """Register ``url`` for type 2 and emit one notification; its id."""
    await put_callback(client, partner, 2, url)
    return await emit(client, partner, 2, payload(2))


# Blocked destinations.


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "LOCALHOST.", "api.localhost"]
)
async def test_a_blocked_destination_fails_with_blocked_address_and_is_never_contacted(
    client: TestClient,
    partner: str,
    dispatch: StartDispatcher,
    listener: ConnectionCounter,
    host: str,
) -> None:
    notification_id = await _deliver_one(client, partner, f"http://{host}:{listener.port}/hook")
    await dispatch(allowed_networks=())

    detail = await settled(client, partner, notification_id, "failed")

    assert detail["failureReason"] == "blocked_address"
    assert detail["attempts"] == 1  # not retried
    [attempt] = detail["attemptLog"]
    assert attempt["error"].startswith("blocked_address: ")
    assert "loopback" in attempt["error"]
    assert attempt["responseStatus"] is None
    assert listener.connections == 0


async def test_a_name_resolving_to_loopback_is_blocked(
    client: TestClient, partner: str, dispatch: StartDispatcher, listener: ConnectionCounter
) -> None:
    # rebind.test does not exist for the API's real DNS, so registration accepts it.
    notification_id = await _deliver_one(client, partner, f"http://rebind.test:{listener.port}/")
    dns = ScriptedDns({"rebind.test": [["127.0.0.1"]]})
    await dispatch(dns, allowed_networks=())

    detail = await settled(client, partner, notification_id, "failed")

    assert detail["failureReason"] == "blocked_address"
    error = detail["attemptLog"][0]["error"]
    assert error == "blocked_address: rebind.test resolves to 127.0.0.1 (loopback)"
    assert listener.connections == 0


# DNS rebinding: 127.0.0.2 plays a public partner (allowed), 127.0.0.1 the internal target.

PARTNER_NETWORK = [ip_network("127.0.0.2/32")]


@pytest.fixture
async def partner_site(listener: ConnectionCounter) -> AsyncIterator[Receiver]:
    """The allowed "public" partner, on 127.0.0.2 and the same port as the internal listener."""
    site = await Receiver(host="127.0.0.2", port=listener.port).start()
    yield site
    await site.stop()


async def test_an_answer_that_changes_after_the_check_cannot_redirect_the_connection(
    client: TestClient,
    partner: str,
    dispatch: StartDispatcher,
    listener: ConnectionCounter,
    partner_site: Receiver,
) -> None:
    # First lookup: the partner. Every later lookup: the internal address. A guard that checks
    # one answer and lets the client look up again would connect to the internal listener.
    dns = ScriptedDns({"rebind.test": [["127.0.0.2"], ["127.0.0.1"]]})
    notification_id = await _deliver_one(client, partner, f"http://rebind.test:{listener.port}/")
    await dispatch(dns, allowed_networks=PARTNER_NETWORK)

    await settled(client, partner, notification_id, "delivered")

    assert len(partner_site.received) == 1
    assert partner_site.received[0].headers["Host"] == f"rebind.test:{listener.port}"
    assert listener.connections == 0
    assert dns.queries == ["rebind.test"]


@pytest.mark.parametrize("answer", [["127.0.0.2", "127.0.0.1"], ["127.0.0.1", "127.0.0.2"]])
async def test_an_answer_mixing_allowed_and_blocked_addresses_is_refused_whole(
    client: TestClient,
    partner: str,
    dispatch: StartDispatcher,
    listener: ConnectionCounter,
    partner_site: Receiver,
    answer: list[str],
) -> None:
    dns = ScriptedDns({"rebind.test": [answer]})
    notification_id = await _deliver_one(client, partner, f"http://rebind.test:{listener.port}/")
    await dispatch(dns, allowed_networks=PARTNER_NETWORK)

    detail = await settled(client, partner, notification_id, "failed")

    assert detail["failureReason"] == "blocked_address"
    assert "127.0.0.1 (loopback)" in detail["attemptLog"][0]["error"]
    assert partner_site.received == []
    assert listener.connections == 0


# Allowed networks, and redirects.


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_allowed_network_is_delivered_to(
    client: TestClient, partner: str, dispatch: StartDispatcher, receiver: Receiver, host: str
) -> None:
    url = receiver.url.replace("127.0.0.1", host)
    notification_id = await _deliver_one(client, partner, url)
    await dispatch()  # the test settings allow 127.0.0.0/8 and ::1

    detail = await settled(client, partner, notification_id, "delivered")

    assert len(receiver.received) == 1
    assert detail["attemptLog"][0]["responseStatus"] == 200


async def test_redirects_are_not_followed(
    client: TestClient,
    partner: str,
    dispatch: StartDispatcher,
    receiver: Receiver,
    listener: ConnectionCounter,
) -> None:
    receiver.default = status(307, headers={"Location": f"http://127.0.0.1:{listener.port}/"})
    notification_id = await _deliver_one(client, partner, receiver.url)
    await dispatch()

    detail = await settled(client, partner, notification_id, "failed")

    assert detail["failureReason"] == "http_error"
    assert {a["responseStatus"] for a in detail["attemptLog"]} == {307}
    assert listener.connections == 0


# What partners send back.


@dataclass
class HugeBody:
    """Answers 200 with ``size`` bytes, counting what it managed to send."""

    size: int
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def respond(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = self.size
        await response.prepare(request)
        chunk = b"a" * 65536
        try:
            while self.sent < self.size:
                await response.write(chunk)
                self.sent += len(chunk)
        except ConnectionResetError:
            pass  # the dispatcher hung up: what this test wants
        finally:
            self.done.set()
        return response


async def test_a_huge_response_body_is_capped_without_reading_it_all(
    client: TestClient, partner: str, dispatch: StartDispatcher, receiver: Receiver
) -> None:
    huge = HugeBody(50 * 1024 * 1024)
    receiver.default = huge.respond
    notification_id = await _deliver_one(client, partner, receiver.url)
    await dispatch()

    detail = await settled(client, partner, notification_id, "delivered")
    await asyncio.wait_for(huge.done.wait(), 15)

    assert detail["attemptLog"][0]["responseBody"] == "a" * RESPONSE_BODY_LIMIT
    # The dispatcher stopped reading and closed the connection: the partner could send no
    # more than what fits in the socket buffers, a small part of the 50 MB.
    assert huge.sent < huge.size // 2


@dataclass
class Drip:
    """Answers 200 and then one byte per second, forever."""

    sent: int = 0

    async def respond(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            await response.write(b"x")
            self.sent += 1
            await asyncio.sleep(1)  # the partner's pace, not a wait for anything


async def test_a_partner_that_streams_forever_hits_the_timeout(
    client: TestClient, partner: str, dispatch: StartDispatcher, receiver: Receiver
) -> None:
    drip = Drip()
    receiver.default = drip.respond
    notification_id = await _deliver_one(client, partner, receiver.url)
    # A lease that outlives a slow write-back on a busy machine: with the suite's 2 s margin the
    # lease once lapsed before the timeout was recorded, and the row was claimed again.
    await dispatch(delivery_timeout=1.0, retry_schedule=(60.0,), lease_margin=10.0)

    detail = await eventually(
        lambda: notification(client, partner, notification_id),
        lambda detail: len(detail["attemptLog"]) == 1 and detail["status"] != "delivering",
    )

    [attempt] = detail["attemptLog"]
    assert attempt["error"] == "timeout"
    assert attempt["responseStatus"] is None
    assert detail["status"] == "queued"  # a timeout is retried
    assert drip.sent >= 1  # the partner had started answering when the timeout struck
