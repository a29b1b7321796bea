"""Delivery through an egress proxy (``CALLBACKHUB_EGRESS_PROXY``), against a real forwarding
proxy on 127.0.0.1: every attempt and every token request goes through it (CONNECT for
https), with the proxy's credentials, and the URL guard still refuses a blocked destination
before the proxy is contacted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from service.core.settings import ConfigurationError, load_settings
from tests.support.api import emit, notification, payload, put_callback, settled
from tests.support.certificates import CertificateAuthority
from tests.support.fixtures import StartDispatcher
from tests.support.polling import eventually
from tests.support.proxy import ForwardProxy
from tests.support.receiver import Receiver
from tests.support.scripted_dns import ScriptedDns
from tests.support.tls_receiver import TlsReceiver, tls_receiver
from tests.support.token_server import TokenServer, oauth2_auth, running_token_server


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    started = await ForwardProxy(credentials=("egress", "pr0xy p@ss")).start()
    yield started
    await started.stop()


PARTNER_CA = CertificateAuthority("Partner CA")


@pytest.fixture
async def tls_partner(tmp_path: Path) -> AsyncIterator[TlsReceiver]:
    """An https partner whose certificate comes from ``PARTNER_CA``."""
    async for receiver in tls_receiver(tmp_path, PARTNER_CA, require_client=False):
        yield receiver


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    async for server in running_token_server():
        yield server


async def test_every_attempt_and_token_request_goes_through_the_proxy_with_its_credentials(
    client: TestClient,
    partner: str,
    receiver: Receiver,
    token_server: TokenServer,
    proxy: ForwardProxy,
    dispatch: StartDispatcher,
) -> None:
    await put_callback(client, partner, 2, receiver.url)
    await put_callback(client, partner, 3, receiver.url, auth=oauth2_auth(token_server))
    plain = [await emit(client, partner, 2, payload(2)) for _ in range(3)]
    with_token = await emit(client, partner, 3, payload(3))
    await dispatch(egress_proxy=proxy.url_with_credentials())

    for notification_id in [*plain, with_token]:
        await settled(client, partner, notification_id, "delivered")

    assert len(receiver.received) == 4
    assert receiver.received[-1].headers["Authorization"] == "Bearer token-1"
    posts = [(r.method, r.target) for r in proxy.requests]
    assert posts.count(("POST", receiver.url)) == 4
    assert posts.count(("POST", token_server.url)) == 1
    assert len(posts) == 5  # nothing else, and nothing around the proxy
    assert {r.proxy_authorization for r in proxy.requests} == {
        "Basic ZWdyZXNzOnByMHh5IHBAc3M="  # egress:pr0xy p@ss
    }


async def test_https_goes_through_a_connect_tunnel(
    client: TestClient,
    partner: str,
    proxy: ForwardProxy,
    dispatch: StartDispatcher,
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority("Partner CA")
    async for tls in tls_receiver(tmp_path, ca, require_client=False):
        await put_callback(client, partner, 2, tls.url, tls={"caCertificate": ca.pem})
        notification_id = await emit(client, partner, 2, payload(2))
        await dispatch(egress_proxy=proxy.url_with_credentials())

        await settled(client, partner, notification_id, "delivered")

        port = tls.url.split(":")[2].split("/")[0]
        assert [(r.method, r.target) for r in proxy.requests] == [("CONNECT", f"127.0.0.1:{port}")]
        assert len(tls.clients) == 1


async def test_the_url_guard_vets_the_destination_before_the_proxy_is_contacted(
    client: TestClient,
    partner: str,
    receiver: Receiver,
    proxy: ForwardProxy,
    dispatch: StartDispatcher,
) -> None:
    # partner.test is an allowed "public" partner (the proxy's own DNS finds the receiver);
    # internal.test resolves, for the dispatcher, to an address outside the allowed networks.
    port = receiver.url.split(":")[2].split("/")[0]
    proxy.hosts["partner.test"] = "127.0.0.1"
    dns = ScriptedDns(
        {
            "partner.test": [["127.0.0.1"]],
            "internal.test": [["10.20.30.40"]],
            "metadata.test": [["169.254.169.254"]],
        }
    )
    await put_callback(client, partner, 2, f"http://internal.test:{port}/hook")
    await put_callback(client, partner, 3, "http://metadata.test/latest/meta-data")
    blocked = [await emit(client, partner, t, payload(t)) for t in (2, 3)]
    await dispatch(dns, egress_proxy=proxy.url_with_credentials())

    for notification_id in blocked:
        detail = await settled(client, partner, notification_id, "failed")
        assert detail["failureReason"] == "blocked_address"
        assert detail["attemptLog"][0]["error"].startswith("blocked_address: ")
    assert proxy.connections == 0

    await put_callback(client, partner, 2, f"http://partner.test:{port}/hook")
    allowed = await emit(client, partner, 2, payload(2))
    await settled(client, partner, allowed, "delivered")
    assert [r.target for r in proxy.requests] == [f"http://partner.test:{port}/hook"]
    assert sorted(dns.queries) == ["internal.test", "metadata.test", "partner.test"]


async def test_a_proxy_that_refuses_a_tunnel_is_named_in_the_attempt_log(
    client: TestClient,
    partner: str,
    proxy: ForwardProxy,
    dispatch: StartDispatcher,
    tls_partner: TlsReceiver,
) -> None:
    await put_callback(client, partner, 2, tls_partner.url, tls={"caCertificate": PARTNER_CA.pem})
    notification_id = await emit(client, partner, 2, payload(2))
    await dispatch(egress_proxy=proxy.url)  # without the proxy's credentials

    detail = await eventually(
        lambda: notification(client, partner, notification_id),
        lambda d: len(d["attemptLog"]) >= 1,
    )
    assert detail["attemptLog"][0]["error"] == "egress proxy refused the request: 407"
    assert detail["status"] in ("queued", "delivering")  # retried: the proxy may be fixed
    assert tls_partner.clients == []


@pytest.mark.parametrize(
    "value",
    [
        "ftp://u:s3cr3t@proxy:21",
        "http://u:s3cr3t@",
        "http://u:s3cr3t@proxy:3128/path",
        "http://u:s3cr3t@proxy:port",
        "u:s3cr3t@proxy:3128",
    ],
)
def test_an_invalid_proxy_url_stops_start_up_without_repeating_its_password(value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(egress_proxy=value)
    assert str(refused.value).startswith("invalid configuration: CALLBACKHUB_EGRESS_PROXY: ")
    assert "s3cr3t" not in str(refused.value)
