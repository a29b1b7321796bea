"""Which callback URLs callbackhub may send to: the syntax, and the addresses behind the host.

The guard judges the host the HTTP client will really connect to. aiohttp parses URLs with yarl,
so the host is yarl's ``raw_host`` (IDNA-encoded, lower case, brackets and userinfo removed), and
IPv4 numbers in legacy spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are read
the way ``inet_aton`` and ``getaddrinfo`` read them. Those spellings are refused outright: parsers
disagree about them, and aiohttp itself refuses some of them.

An address is refused when it is loopback, private, carrier-grade NAT, link-local, multicast,
unspecified, broadcast, reserved or otherwise not globally routable, including IPv6 forms that
carry such an IPv4 address inside. Addresses inside ``allowed_networks`` are always accepted.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL_LENGTH = 2048
REGISTRATION_LOOKUP_TIMEOUT = 2.0

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

LOOPBACK_BY_NAME: tuple[Address, ...] = (IPv4Address("127.0.0.1"), IPv6Address("::1"))

_IPV4_RANGES: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "unspecified"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("10.0.0.0/8"), "private"),
    (IPv4Network("172.16.0.0/12"), "private"),
    (IPv4Network("192.168.0.0/16"), "private"),
    (IPv4Network("100.64.0.0/10"), "carrier-grade NAT"),
    (IPv4Network("169.254.169.254/32"), "link-local, cloud metadata"),
    (IPv4Network("169.254.0.0/16"), "link-local"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("255.255.255.255/32"), "broadcast"),
    (IPv4Network("240.0.0.0/4"), "reserved"),
)

_IPV6_RANGES: tuple[tuple[IPv6Network, str], ...] = (
    (IPv6Network("::/128"), "unspecified"),
    (IPv6Network("::1/128"), "loopback"),
    (IPv6Network("fc00::/7"), "unique local (private)"),
    (IPv6Network("fe80::/10"), "link-local"),
    (IPv6Network("fec0::/10"), "site-local (private)"),
    (IPv6Network("ff00::/8"), "multicast"),
    (IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
)

# IPv6 forms that carry an IPv4 address in their last 32 bits, judged by that IPv4 address.
_NAT64 = IPv6Network("64:ff9b::/96")
# Deprecated forms no partner uses; refused whatever IPv4 address they carry.
_IPV4_COMPATIBLE = IPv6Network("::/96")
_IPV4_TRANSLATED = IPv6Network("::ffff:0:0:0/96")

_DIGITS = {16: re.compile(r"[0-9a-f]*"), 10: re.compile(r"[0-9]+"), 8: re.compile(r"[0-7]+")}


class UrlRejected(ValueError):
    """The callback URL is not acceptable."""


class BlockedAddress(OSError):
    """The destination is a loopback, private or otherwise internal address."""


# Syntax.


def check_url_syntax(url: str, require_https: bool = False) -> None:
    """An absolute http(s) URL with a host, at most 2048 characters."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise UrlRejected("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise UrlRejected(f"is not a valid URL: {error}") from None
    allowed = ("https",) if require_https else ("https", "http")
    if parts.scheme.lower() not in allowed:
        raise UrlRejected(f"must be an absolute {' or '.join(allowed)} URL")
    if not hostname:
        raise UrlRejected("must have a host")


# Hosts: what the HTTP client will connect to.


def client_host(url: str) -> str:
    """The host aiohttp connects to for ``url``, normalised (see ``normalise_host``)."""
    try:
        host = yarl.URL(url).raw_host
    except ValueError as error:  # includes IDNA errors (UnicodeError)
        raise UrlRejected(f"is not a valid URL: {error}") from None
    if not host:
        raise UrlRejected("must have a host")
    return normalise_host(host)


def normalise_host(host: str) -> str:
    """Lower case, without IPv6 brackets and without trailing dots."""
    return host.lower().removeprefix("[").removesuffix("]").rstrip(".")


def is_localhost_name(host: str) -> bool:
    """``localhost`` and ``*.localhost`` are loopback by name (RFC 6761), whatever DNS says."""
    return host == "localhost" or host.endswith(".localhost")


def parse_numeric_ipv4(host: str) -> IPv4Address | None:
    """The IPv4 address ``host`` spells in any ``inet_aton`` form (one to four numbers, each
    decimal, octal with a leading 0 or hex with 0x), or None when it is not such a form."""
    parts = host.split(".")
    numbers = [_ipv4_number(part) for part in parts]
    if not 1 <= len(parts) <= 4 or None in numbers:
        return None
    *leading, last = [number for number in numbers if number is not None]
    if any(number > 0xFF for number in leading) or last >= 1 << (8 * (5 - len(parts))):
        return None
    value = last
    for position, number in enumerate(leading):
        value += number << (8 * (3 - position))
    return IPv4Address(value)


def _ipv4_number(part: str) -> int | None:
    base, digits = 10, part
    if part.startswith("0x"):
        base, digits = 16, part[2:]
    elif len(part) > 1 and part.startswith("0"):
        base, digits = 8, part[1:]
    if not _DIGITS[base].fullmatch(digits):
        return None
    return int(digits, base) if digits else 0


def host_literal(host: str) -> Address | None:
    """The address when ``host`` is an IP literal (IPv6, or IPv4 in any spelling)."""
    try:
        return ip_address(host)
    except ValueError:
        return parse_numeric_ipv4(host)


def spelling_problem(host: str) -> str | None:
    """Why a numeric IPv4 host is refused however it is allowed: anything but a.b.c.d."""
    numeric = parse_numeric_ipv4(host)
    if numeric is not None and str(numeric) != host:
        category = blocked_category(numeric)
        meaning = f"{numeric} ({category})" if category else str(numeric)
        return f"{host} is a non-canonical spelling of {meaning}; write IPv4 as a.b.c.d"
    if numeric is None and host and set(host) <= set("0123456789."):
        return f"{host} is not a valid IPv4 address"
    return None


def addresses_without_dns(host: str) -> tuple[Address, ...] | None:
    """The addresses ``host`` stands for without asking DNS, or None when it needs DNS."""
    if is_localhost_name(host):
        return LOOPBACK_BY_NAME
    literal = host_literal(host)
    return None if literal is None else (literal,)


# Addresses.


def blocked_category(address: Address) -> str | None:
    """Why callbackhub must never connect to ``address`` (ignoring allowed networks), or None."""
    if isinstance(address, IPv6Address):
        return _ipv6_category(address)
    return _ipv4_category(address)


def _ipv4_category(address: IPv4Address) -> str | None:
    named = next((name for network, name in _IPV4_RANGES if address in network), None)
    if named is not None:
        return named
    return None if address.is_global else "not globally routable"


def _ipv6_category(address: IPv6Address) -> str | None:
    named = next((name for network, name in _IPV6_RANGES if address in network), None)
    if named is not None:
        return named
    if address.teredo is not None:
        return f"Teredo tunnel to {address.teredo[1]}"
    if address in _IPV4_COMPATIBLE or address in _IPV4_TRANSLATED:
        return f"deprecated IPv4-compatible form of {_last_32_bits(address)}"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner = _ipv4_category(embedded[1])
        return f"{embedded[0]} form of {embedded[1]}, {inner}" if inner else None
    if address.is_reserved:
        return "reserved"
    return None if address.is_global else "not globally routable"


def _embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address reaches, with the form's name."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address in _NAT64:
        return "NAT64", _last_32_bits(address)
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    return None


def _last_32_bits(address: IPv6Address) -> IPv4Address:
    return IPv4Address(int(address) & 0xFFFFFFFF)


def is_allowed(address: Address, allowed: Iterable[Network]) -> bool:
    """Inside an allowed network (an IPv4-mapped address counts as its IPv4 address)."""
    candidates: list[Address] = [address]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate in network
        for candidate in candidates
        for network in allowed
        if candidate.version == network.version
    )


def address_problem(address: Address, allowed: Iterable[Network]) -> str | None:
    """Why the dispatcher must not connect to ``address``, or None when it may."""
    if is_allowed(address, allowed):
        return None
    category = blocked_category(address)
    return f"{address} ({category})" if category else None


def text_address_problem(text: str, allowed: Iterable[Network]) -> str | None:
    """``address_problem`` for an address as the resolver or socket layer writes it."""
    try:
        address = ip_address(text)
    except ValueError:
        return f"{text!r} (not an IP address)"
    return address_problem(address, allowed)


# Resolving once, and vetting every answer.


async def resolve_vetted(
    host: str,
    port: int,
    family: socket.AddressFamily,
    allowed: Sequence[Network],
    dns: AbstractResolver,
) -> list[ResolveResult]:
    """Resolve ``host`` once; the answer only if every address in it may be contacted.

    Raises ``BlockedAddress`` when any address (or the host's spelling) is refused: a name that
    answers a public address and a private one is refused as a whole, never filtered.
    """
    name = normalise_host(host)
    _refuse(spelling_problem(name))
    known = addresses_without_dns(name)
    if known is None:
        results = await dns.resolve(name, port, family)
    else:
        results = [_numeric_result(name, a, port) for a in known if _wanted(a, family)]
    if not results:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
    problems = (text_address_problem(result["host"], allowed) for result in results)
    _refuse(next((f"{host} resolves to {p}" for p in problems if p), None))
    return results


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise BlockedAddress(problem)


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _wanted(address: Address, family: socket.AddressFamily) -> bool:
    return family in (socket.AF_UNSPEC, _family(address))


def _numeric_result(name: str, address: Address, port: int) -> ResolveResult:
    """A resolver answer for an address known without DNS."""
    return ResolveResult(
        hostname=name,
        host=str(address),
        port=port,
        family=_family(address),
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )


# Registration.


async def check_url_destination(
    url: str,
    allowed: Sequence[Network],
    dns: AbstractResolver | None = None,
    timeout: float = REGISTRATION_LOOKUP_TIMEOUT,  # noqa: ASYNC109 - a bound on the lookup
) -> None:
    """Refuse a URL whose host is, or resolves at once to, an address that must not be contacted.

    A host that does not resolve within ``timeout`` is accepted: every delivery attempt checks
    again.
    """
    host = client_host(url)
    try:
        async with asyncio.timeout(timeout):
            await resolve_vetted(host, 0, socket.AF_UNSPEC, allowed, dns or ThreadedResolver())
    except BlockedAddress as error:
        raise UrlRejected(
            f"must not point to a loopback, private or internal address: {error}"
        ) from None
    except OSError:  # does not resolve (or not in time; TimeoutError is an OSError)
        return
