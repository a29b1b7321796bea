"""TLS per callback against a real TLS server on 127.0.0.1: a private CA trusted for this
callback only, and a client certificate for a partner whose server requires one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api import (
    create_partner,
    emit,
    notification,
    payload,
    put_callback,
    settled,
    validation_problem,
)
from tests.support.certificates import CertificateAuthority, Issued
from tests.support.polling import eventually
from tests.support.tls_receiver import TlsReceiver, tls_receiver
from tests.support.tokens import auth


@pytest.fixture
def partner_ca() -> CertificateAuthority:
    return CertificateAuthority("Partner CA")


@pytest.fixture
async def mtls_receiver(
    tmp_path: Path, partner_ca: CertificateAuthority
) -> AsyncIterator[TlsReceiver]:
    async for receiver in tls_receiver(tmp_path, partner_ca, require_client=True):
        yield receiver


def _mtls(issued: Issued) -> dict[str, str]:
    return {"type": "mtls", "certificate": issued.certificate, "privateKey": issued.private_key}


async def test_a_client_certificate_is_presented_to_a_server_that_requires_one(
    client_with_dispatcher: TestClient,
    mtls_receiver: TlsReceiver,
    partner_ca: CertificateAuthority,
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    issued = partner_ca.issue("callbackhub-client", server=False)
    created = await put_callback(
        client,
        partner,
        2,
        mtls_receiver.url,
        auth=_mtls(issued),
        tls={"caCertificate": partner_ca.pem},
    )
    assert created["auth"] == {
        "type": "mtls",
        "certificate": issued.certificate,
        "privateKey": "••••",
    }
    assert created["tls"] == {"caCertificate": partner_ca.pem}
    delivered = await emit(client, partner, 2, payload(2))
    await settled(client, partner, delivered, "delivered")
    assert mtls_receiver.clients == ["callbackhub-client"]

    # Without the certificate the server refuses the handshake: retried, recorded.
    await put_callback(client, partner, 2, mtls_receiver.url, auth=None)
    refused = await emit(client, partner, 2, payload(2))
    detail = await eventually(
        lambda: notification(client, partner, refused), lambda d: len(d["attemptLog"]) >= 1
    )
    assert detail["attemptLog"][0]["responseStatus"] is None
    assert detail["attemptLog"][0]["error"]
    assert mtls_receiver.clients == ["callbackhub-client"]


async def test_a_private_ca_is_trusted_for_its_callback_only_and_a_wrong_one_fails(
    client_with_dispatcher: TestClient, tmp_path: Path, partner_ca: CertificateAuthority
) -> None:
    client = client_with_dispatcher
    async for receiver in tls_receiver(tmp_path, partner_ca, require_client=False):
        partner = await create_partner(client)
        await put_callback(client, partner, 2, receiver.url, tls={"caCertificate": partner_ca.pem})
        trusted = await emit(client, partner, 2, payload(2))
        await settled(client, partner, trusted, "delivered")

        # Another callback to the same server without the CA: verification is never off.
        await put_callback(client, partner, 3, receiver.url)
        untrusted = await emit(client, partner, 3, payload(3))
        assert "certificate verify failed" in await _first_error(client, partner, untrusted)

        # A wrong CA fails the same way, recorded in the attempt log.
        other_ca = CertificateAuthority("Some Other CA")
        await put_callback(client, partner, 2, receiver.url, tls={"caCertificate": other_ca.pem})
        wrong = await emit(client, partner, 2, payload(2))
        assert "certificate verify failed" in await _first_error(client, partner, wrong)
        assert len(receiver.clients) == 1


async def _first_error(client: TestClient, partner: str, notification_id: str) -> str:
    """The error of the notification's first attempt, once it is in the log (lower case)."""
    detail = await eventually(
        lambda: notification(client, partner, notification_id),
        lambda found: len(found["attemptLog"]) >= 1,
    )
    error: str = detail["attemptLog"][0]["error"] or ""
    return error.lower()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("other key", "auth.privateKey"),
        ("expired", "auth.certificate"),
        ("not a certificate", "auth.certificate"),
        ("bad ca", "tls.caCertificate"),
    ],
)
async def test_certificates_are_checked_at_registration_naming_the_field(
    client: TestClient, partner: str, partner_ca: CertificateAuthority, change: str, field: str
) -> None:
    issued = partner_ca.issue("client", server=False)
    mtls = _mtls(issued)
    tls = {"caCertificate": partner_ca.pem}
    if change == "other key":
        mtls["privateKey"] = partner_ca.issue("someone else", server=False).private_key
    elif change == "expired":
        mtls = _mtls(partner_ca.issue("client", server=False, days=-1, not_before_days=2))
    elif change == "not a certificate":
        mtls["certificate"] = "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n"
    else:
        tls["caCertificate"] = "not PEM at all"
    body = {"url": "https://partner.example/hook", "auth": mtls, "tls": tls}
    response = await client.put(f"/partners/{partner}/callbacks/2", json=body, headers=auth())
    assert field in await validation_problem(response)
