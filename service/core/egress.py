"""The dispatcher's way out: an aiohttp connector that only ever connects to vetted addresses.

Two gates, both applying ``service.core.url_guard``:

- ``GuardedResolver`` resolves a host name once, refuses the host when any address in the answer
  is blocked, and hands aiohttp exactly the addresses it checked. aiohttp connects to those
  addresses and does not ask DNS again, so an answer that changes between the check and the
  connection (DNS rebinding) cannot reach an internal address.
- ``vetted_socket_factory`` checks the address of every socket aiohttp opens, right before the
  ``connect``. IP literals never reach a resolver in aiohttp, so this is where they are judged;
  for names it is a second look at what the resolver already vetted.

A refusal is a ``BlockedAddress`` (an ``OSError``), which aiohttp wraps in a
``ClientConnectorError``; no packet has left for the address by then.

With an egress proxy (``CALLBACKHUB_EGRESS_PROXY``) the dispatcher connects only to the proxy,
so the gates above would judge the proxy, not the partner. A client middleware takes their
place: it resolves and vets the destination's host with the same rules before each request
and only then routes the request through the proxy. The proxy resolves the name again, so the
rebinding protection of the first gate is the proxy's to give (the README says what it must
enforce).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from aiohttp.resolver import ThreadedResolver
from multidict import CIMultiDict
from yarl import URL

from service.core.url_guard import BlockedAddress, Network, resolve_vetted, text_address_problem


class GuardedResolver(AbstractResolver):
    """Resolve once through ``dns``; every address vetted, or ``BlockedAddress``."""

    def __init__(self, allowed: Sequence[Network], dns: AbstractResolver | None = None) -> None:
        self._allowed = tuple(allowed)
        self._dns = dns or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return await resolve_vetted(host, port, family, self._allowed, self._dns)

    async def close(self) -> None:
        await self._dns.close()


def vetted_socket_factory(allowed: Sequence[Network]) -> SocketFactoryType:
    """A socket factory that refuses to open a socket for a blocked destination."""
    networks = tuple(allowed)

    def open_vetted_socket(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        problem = text_address_problem(str(sockaddr[0]), networks)
        if problem is not None:
            raise BlockedAddress(problem)
        return socket.socket(family=family, type=kind, proto=proto)

    return open_vetted_socket


def guarded_connector(
    allowed: Sequence[Network], limit: int, dns: AbstractResolver | None = None
) -> aiohttp.TCPConnector:
    """The connector for deliveries: the guard on every connection, no per-host limit."""
    return aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=0,
        resolver=GuardedResolver(allowed, dns),
        socket_factory=vetted_socket_factory(allowed),
    )


@dataclass(frozen=True, repr=False)
class EgressProxy:
    """The forward proxy every outbound request goes through."""

    url: URL  # without credentials: safe to log
    authorization: str | None  # Proxy-Authorization, from credentials in the configured URL

    @classmethod
    def parse(cls, text: str) -> EgressProxy:
        url = URL(text)
        authorization = None
        if url.user is not None:
            authorization = aiohttp.encode_basic_auth(url.user, url.password or "")
        return cls(url.with_user(None).with_path(""), authorization)

    def __repr__(self) -> str:
        return f"EgressProxy({str(self.url)!r})"


def through_proxy(
    proxy: EgressProxy, allowed: Sequence[Network], dns: AbstractResolver | None = None
) -> ClientMiddlewareType:
    """A client middleware: vet the destination, then send the request through ``proxy``."""
    networks, resolver = tuple(allowed), dns or ThreadedResolver()

    async def vet_then_route(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        host, port = request.url.raw_host or "", request.url.port or 0
        try:
            await resolve_vetted(host, port, socket.AF_UNSPEC, networks, resolver)
        except OSError as refusal:  # the shape the connector's own refusals have
            raise aiohttp.ClientConnectorError(request.connection_key, refusal) from None
        tunnel_headers = None
        if proxy.authorization is not None:
            if request.is_ssl():  # on the CONNECT (aiohttp adds to this dict: one per request)
                tunnel_headers = CIMultiDict({"Proxy-Authorization": proxy.authorization})
            else:  # on the request itself, which the proxy forwards without it
                request.headers["Proxy-Authorization"] = proxy.authorization
        request.update_proxy(proxy.url, None, tunnel_headers)
        return await handler(request)

    return vet_then_route


def egress_session(
    allowed: Sequence[Network],
    limit: int,
    dns: AbstractResolver | None = None,
    proxy: EgressProxy | None = None,
) -> aiohttp.ClientSession:
    """The client session for every outbound request of the dispatcher: straight out through
    the guarded connector, or through the egress proxy with the destination vetted first."""
    # No cookie jar: a cookie one partner sets must never ride along on a later request (to it
    # or to anyone), and keeping none spares every request the jar's bookkeeping.
    if proxy is None:
        connector = guarded_connector(allowed, limit, dns)
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0),
        middlewares=(through_proxy(proxy, allowed, dns),),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def blocked_cause(error: BaseException) -> BlockedAddress | None:
    """The guard's refusal behind an aiohttp connection error, if that is what it is."""
    if isinstance(error, BlockedAddress):
        return error
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, BlockedAddress
    ):
        return error.os_error
    return None
