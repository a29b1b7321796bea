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
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

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


def blocked_cause(error: BaseException) -> BlockedAddress | None:
    """The guard's refusal behind an aiohttp connection error, if that is what it is."""
    if isinstance(error, BlockedAddress):
        return error
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, BlockedAddress
    ):
        return error.os_error
    return None
