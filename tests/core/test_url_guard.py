"""The outbound URL guard: which addresses are refused and how tricky host spellings are read
(what registration answers is in tests/api/test_callback_url_guard.py). Nothing here connects
anywhere: the guard is asked, never used."""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import pytest

from service.core.egress import GuardedResolver, vetted_socket_factory
from service.core.url_guard import (
    BlockedAddress,
    UrlRejected,
    blocked_category,
    check_url_destination,
    client_host,
    parse_numeric_ipv4,
)
from tests.support.scripted_dns import ScriptedDns

LOOPBACK_V4 = ip_network("127.0.0.0/8")
FULLWIDTH_LOCALHOST = "".join(chr(ord(letter) + 0xFEE0) for letter in "localhost")


# Addresses.

BLOCKED_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.100.100.200", "carrier-grade NAT"),  # Alibaba Cloud metadata
    ("169.254.169.254", "cloud metadata"),
    ("169.254.10.1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - classified, never bound
    ("0.1.2.3", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "not globally routable"),
    ("198.18.0.1", "not globally routable"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique local"),
    ("fd00:ec2::254", "unique local"),  # AWS metadata over IPv6
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1, private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("64:ff9b::10.0.0.1", "NAT64 form of 10.0.0.1, private"),
    ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1, loopback"),
    ("64:ff9b:1::8.8.8.8", "local-use NAT64"),
    ("2002:a00:1::", "6to4 form of 10.0.0.1, private"),
    ("2002:7f00:1::1", "6to4 form of 127.0.0.1, loopback"),
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
    ("::8.8.8.8", "IPv4-compatible form of 8.8.8.8"),
    ("::ffff:0:127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:db8::1", "not globally routable"),
    ("100::1", "reserved"),
]

ALLOWED_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",  # just outside 172.16.0.0/12
    "100.128.0.1",  # just outside 100.64.0.0/10
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "category"), BLOCKED_ADDRESSES)
def test_blocked_addresses_are_classified(address: str, category: str) -> None:
    found = blocked_category(ip_address(address))

    assert found is not None
    assert category in found


@pytest.mark.parametrize("address", ALLOWED_ADDRESSES)
def test_public_addresses_are_not_blocked(address: str) -> None:
    assert blocked_category(ip_address(address)) is None


# Host spellings: what aiohttp would connect to, and how it is read.

NUMERIC_SPELLINGS = [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0.0x1", "127.0.0.1"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("10.0x10203", "10.1.2.3"),
    ("8.8.8.8", "8.8.8.8"),
]


@pytest.mark.parametrize(("host", "address"), NUMERIC_SPELLINGS)
def test_numeric_ipv4_spellings_are_read_like_inet_aton(host: str, address: str) -> None:
    assert str(parse_numeric_ipv4(host)) == address
    assert socket.inet_ntoa(socket.inet_aton(host)) == address  # the C library agrees


@pytest.mark.parametrize(
    "host", ["example.com", "1.2.3.4.5", "08.0.0.1", "256.0.0.1", "4294967296", "0x1g", "1_0"]
)
def test_non_numbers_are_not_ipv4(host: str) -> None:
    assert parse_numeric_ipv4(host) is None


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://good.example@127.0.0.1/", "127.0.0.1"),
        ("http://127.0.0.1:80@partner.example/", "partner.example"),
        ("http://LOCALHOST./", "localhost"),
        ("http://Partner.EXAMPLE../x", "partner.example"),
        ("http://[::FFFF:127.0.0.1]:8080/", "::ffff:7f00:1"),
        ("http://bücher.example/", "xn--bcher-kva.example"),
        (f"http://{FULLWIDTH_LOCALHOST}/", "localhost"),  # IDNA maps it to ASCII
        ("http://①②⑦.0.0.1/", "127.0.0.1"),  # circled digits, IDNA-mapped
        ("http://127。0。0。1/", "127.0.0.1"),  # ideographic full stops
    ],
)
def test_the_judged_host_is_the_one_the_client_connects_to(url: str, host: str) -> None:
    assert client_host(url) == host


# The destination check, without a network: a scripted DNS.

REFUSED_URLS = [
    ("http://127.0.0.1/", "127.0.0.1 (loopback)"),
    ("http://2130706433/", "non-canonical spelling of 127.0.0.1 (loopback)"),
    ("http://0x7f000001/", "non-canonical spelling of 127.0.0.1"),
    ("http://0177.0.0.1/", "non-canonical spelling of 127.0.0.1"),
    ("http://127.1/", "non-canonical spelling of 127.0.0.1"),
    ("http://0x7f.1/", "non-canonical spelling of 127.0.0.1"),
    ("http://0xa9fea9fe/latest/", "non-canonical spelling of 169.254.169.254"),
    ("http://4294967296/", "not a valid IPv4 address"),
    ("http://127.0.0.1./", "127.0.0.1 (loopback)"),
    ("http://localhost/", "127.0.0.1 (loopback)"),
    ("http://localhost./", "127.0.0.1 (loopback)"),
    ("http://LocalHost:8080/", "127.0.0.1 (loopback)"),
    ("http://api.localhost/", "127.0.0.1 (loopback)"),
    (f"http://{FULLWIDTH_LOCALHOST}/", "127.0.0.1 (loopback)"),
    ("http://①②⑦.0.0.1/", "127.0.0.1 (loopback)"),
    ("http://good.example@127.0.0.1/", "127.0.0.1 (loopback)"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1"),
    ("http://[::ffff:7f00:1]/", "IPv4-mapped form of 127.0.0.1"),
    ("http://[64:ff9b::a00:1]/", "NAT64 form of 10.0.0.1"),
    ("http://[2002:c0a8:1::1]/", "6to4 form of 192.168.0.1"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("http://[fc00::1]/", "unique local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[ff02::1]/", "multicast"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
async def test_literal_and_local_hosts_are_refused_without_dns(url: str, reason: str) -> None:
    dns = ScriptedDns()

    with pytest.raises(UrlRejected) as refused:
        await check_url_destination(url, allowed=(), dns=dns)

    assert reason in str(refused.value)
    assert dns.queries == []


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/hook",
        "https://[2001:4860:4860::8888]/hook",
        "https://[::ffff:8.8.8.8]/hook",
        "https://[64:ff9b::808:808]/hook",
        "https://[2002:808:808::1]/hook",
    ],
)
async def test_public_literals_are_accepted_without_dns(url: str) -> None:
    dns = ScriptedDns()

    await check_url_destination(url, allowed=(), dns=dns)

    assert dns.queries == []


@pytest.mark.parametrize(
    "answer",
    [["10.0.0.5"], ["127.0.0.1"], ["::1"], ["93.184.216.34", "127.0.0.1"], ["fd00::1"]],
)
async def test_a_name_resolving_to_any_blocked_address_is_refused(answer: list[str]) -> None:
    dns = ScriptedDns({"intranet.test": [answer]})

    with pytest.raises(UrlRejected, match=re.escape("intranet.test resolves to")):
        await check_url_destination("https://Intranet.TEST./hook", allowed=(), dns=dns)

    assert dns.queries == ["intranet.test"]


async def test_a_name_resolving_to_public_addresses_is_accepted() -> None:
    dns = ScriptedDns({"partner.test": [["93.184.216.34", "2606:2800:220:1::1"]]})

    await check_url_destination("https://partner.test/hook", allowed=(), dns=dns)

    assert dns.queries == ["partner.test"]


async def test_an_idna_name_is_looked_up_in_its_ascii_form() -> None:
    dns = ScriptedDns({"xn--bcher-kva.example": [["10.0.0.7"]]})

    with pytest.raises(UrlRejected, match=re.escape("10.0.0.7")):
        await check_url_destination("https://BÜCHER.example/hook", allowed=(), dns=dns)


async def test_a_name_that_does_not_resolve_is_accepted() -> None:
    dns = ScriptedDns()

    await check_url_destination("https://not-yet.test/hook", allowed=(), dns=dns)

    assert dns.queries == ["not-yet.test"]


async def test_a_lookup_that_never_answers_is_accepted_after_the_bound() -> None:
    dns = ScriptedDns(silent={"slow.test"})

    await check_url_destination("https://slow.test/hook", allowed=(), dns=dns, timeout=0.05)

    assert dns.queries == ["slow.test"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/", [LOOPBACK_V4]),
        ("http://[::ffff:127.0.0.1]/", [LOOPBACK_V4]),
        ("http://localhost/", [LOOPBACK_V4, ip_network("::1/128")]),
        ("http://10.1.2.3/", [ip_network("10.0.0.0/8")]),
        ("http://[fd00::5]/", [ip_network("fd00::/8")]),
    ],
)
async def test_allowed_networks_are_exempt(
    url: str, allowed: list[IPv4Network | IPv6Network]
) -> None:
    await check_url_destination(url, allowed=allowed, dns=ScriptedDns())


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://10.1.2.3/", [LOOPBACK_V4]),  # another network
        ("http://localhost/", [LOOPBACK_V4]),  # ::1 is not allowed
        ("http://127.1/", [LOOPBACK_V4]),  # spellings are refused even inside
        ("http://0x7f.0.0.1/", [LOOPBACK_V4]),
    ],
)
async def test_the_exemption_covers_only_the_allowed_networks(
    url: str, allowed: list[IPv4Network | IPv6Network]
) -> None:
    with pytest.raises(UrlRejected):
        await check_url_destination(url, allowed=allowed, dns=ScriptedDns())


# The delivery resolver and the socket gate.


async def test_the_resolver_hands_over_exactly_the_vetted_answer() -> None:
    dns = ScriptedDns({"partner.test": [["93.184.216.34", "2606:2800:220:1::1"]]})
    resolver = GuardedResolver((), dns)

    results = await resolver.resolve("partner.test", 443, socket.AF_UNSPEC)

    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1::1"]
    assert {r["port"] for r in results} == {443}


@pytest.mark.parametrize(
    "answer", [["93.184.216.34", "127.0.0.1"], ["127.0.0.1", "93.184.216.34"], ["not-an-ip"]]
)
async def test_the_resolver_refuses_the_whole_answer_when_one_address_is_bad(
    answer: list[str],
) -> None:
    resolver = GuardedResolver((), ScriptedDns({"mixed.test": [answer]}))

    with pytest.raises(BlockedAddress, match=re.escape("mixed.test resolves to")):
        await resolver.resolve("mixed.test", 443, socket.AF_UNSPEC)


@pytest.mark.parametrize("host", ["0x7f.1", "0x7f000001", "127.1", "2130706433"])
async def test_the_resolver_refuses_numeric_spellings_without_dns(host: str) -> None:
    dns = ScriptedDns()

    with pytest.raises(BlockedAddress, match=re.escape("non-canonical spelling of 127.0.0.1")):
        await GuardedResolver([LOOPBACK_V4], dns).resolve(host, 80, socket.AF_UNSPEC)

    assert dns.queries == []


@pytest.mark.parametrize(
    ("family", "hosts"),
    [(socket.AF_UNSPEC, ["127.0.0.1", "::1"]), (socket.AF_INET, ["127.0.0.1"])],
)
async def test_localhost_is_loopback_by_name(family: socket.AddressFamily, hosts: list) -> None:
    dns = ScriptedDns({"localhost": [["93.184.216.34"]]})  # DNS is not asked
    resolver = GuardedResolver([LOOPBACK_V4, ip_network("::1/128")], dns)

    results = await resolver.resolve("localhost.", 80, family)

    assert [r["host"] for r in results] == hosts
    assert dns.queries == []
    with pytest.raises(BlockedAddress, match="loopback"):
        await GuardedResolver((), dns).resolve("localhost", 80, family)


@pytest.mark.parametrize(
    "sockaddr", [("127.0.0.1", 80), ("::ffff:7f00:1", 80, 0, 0), ("169.254.169.254", 80)]
)
def test_the_socket_gate_refuses_before_a_socket_exists(sockaddr: tuple[Any, ...]) -> None:
    family = socket.AF_INET6 if ":" in sockaddr[0] else socket.AF_INET
    open_socket = vetted_socket_factory(())

    with pytest.raises(BlockedAddress):
        open_socket((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))


def test_the_socket_gate_opens_sockets_for_allowed_addresses() -> None:
    open_socket = vetted_socket_factory([LOOPBACK_V4])

    with open_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))) as sock:
        assert sock.family == socket.AF_INET
