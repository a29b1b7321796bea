"""The JWT attack matrix (issue 4): each attack is refused, and nothing is stored while refusing.

Every attack tries the most sensitive thing a token can do here (register a callback, i.e. choose
where a partner's data is sent) and then checks that no table changed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization

from service.api.app import create_app
from tests.support.polling import eventually
from tests.support.settings import make_settings
from tests.support.state import Digest, changed_tables, digests
from tests.support.tokens import (
    auth,
    b64url,
    bearer,
    claims,
    ec_private_key,
    hmac_signed,
    hs256,
    public_pem,
    rsa_private_key,
    segment,
    unsigned,
)

WRITE = "callbacks:write"
EVERY_SCOPE = "callbacks:read callbacks:write notifications:emit deliveries:read deliveries:write"
CALLBACK = {"url": "https://example.com/hook"}
MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path, database: str) -> MakeClient:
    async def make(**overrides: Any) -> TestClient:
        return await aiohttp_client(create_app(make_settings(tmp_path, **overrides), database))

    return make


@pytest.fixture
async def digest(database: str) -> AsyncIterator[Digest]:
    """Snapshots of every table of the test database, on one connection."""
    async with digests(database) as take:
        yield take


async def assert_refused_write(
    api: TestClient, digest: Digest, partner: str, headers: dict[str, str], status: int
) -> ClientResponse:
    """Try to register a callback with ``headers``: refused with ``status``, nothing stored."""
    before = await digest()
    response = await api.put(f"/partners/{partner}/callbacks/2", json=CALLBACK, headers=headers)
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert changed_tables(before, await digest()) == []
    return response


async def assert_write_allowed(
    api: TestClient, digest: Digest, partner: str, headers: dict[str, str]
) -> None:
    """The control: the same request with a good token registers the callback, and the digest
    that proves the refusals stored nothing does see it."""
    before = await digest()
    response = await api.put(f"/partners/{partner}/callbacks/2", json=CALLBACK, headers=headers)
    assert response.status in (200, 201), await response.text()
    assert "callbacks" in changed_tables(before, await digest())


async def test_alg_none(client: TestClient, digest: Digest, partner: str) -> None:
    payload = claims(f"{WRITE} partners:admin")
    genuine_signature = hs256(payload).rsplit(".", 1)[1]  # pasted behind alg none
    for alg in ("none", "None", "nOnE", "NONE"):
        for signature in ("", "forged", genuine_signature):
            token = unsigned(payload, alg=alg, signature=signature)
            await assert_refused_write(client, digest, partner, bearer(token), 401)


def _key_material(pem: str, form: str) -> bytes:
    if form == "pem":
        return pem.encode()
    if form == "pem-stripped":
        return pem.strip().encode()
    public = serialization.load_pem_public_key(pem.encode())
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("secret", ["shared-secret", "no-secret", "public-key-as-secret"])
async def test_algorithm_confusion_hs256_signed_with_the_public_key(
    make_client: MakeClient, digest: Digest, partner: str, secret: str
) -> None:
    """An HS256 token whose HMAC key is the server's RS256 public key (as PEM, trimmed PEM or
    DER) is refused, whether the server also has a JWT secret, has none, or was even
    misconfigured with the PEM as its secret."""
    key = rsa_private_key()
    pem = public_pem(key)
    overrides: dict[str, Any] = {"jwt_public_key": pem}
    if secret == "no-secret":
        overrides["jwt_secret"] = None
    elif secret == "public-key-as-secret":
        overrides["jwt_secret"] = pem
    api = await make_client(**overrides)
    for form in ("pem", "pem-stripped", "der"):
        forged = hmac_signed(claims(WRITE), _key_material(pem, form))
        await assert_refused_write(api, digest, partner, bearer(forged), 401)
    await assert_write_allowed(
        api, digest, partner, bearer(jwt.encode(claims(WRITE), key, "RS256"))
    )


async def test_an_embedded_jwk_is_not_trusted(
    make_client: MakeClient, digest: Digest, partner: str
) -> None:
    """The attacker signs with their own key and puts it (or a URL to it) in the header."""
    api = await make_client(jwt_public_key=public_pem(rsa_private_key()))
    attacker = rsa_private_key()
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    for header in ({"jwk": jwk}, {"jku": "https://evil.example/jwks.json"}, {"kid": "../../x"}):
        token = jwt.encode(claims(WRITE), attacker, algorithm="RS256", headers=header)
        await assert_refused_write(api, digest, partner, bearer(token), 401)


async def test_a_malformed_alg_header_is_401_not_a_crash(
    client: TestClient, digest: Digest, partner: str
) -> None:
    """An ``alg`` that is a list or an object used to crash the lookup (unhashable): a 500."""
    for alg in (["HS256"], {"HS256": True}, None, 256, True, ""):
        header = {"alg": alg, "typ": "JWT"}
        token = hmac_signed(claims(WRITE), b"whatever", header=header)
        await assert_refused_write(client, digest, partner, bearer(token), 401)
    assert (await client.get("/health/ready")).status == 200


async def test_an_expired_token(client: TestClient, digest: Digest, partner: str) -> None:
    expired = hs256(claims(WRITE, ttl=-5))
    await assert_refused_write(client, digest, partner, bearer(expired), 401)


async def test_a_token_stops_working_when_it_expires_even_after_it_was_accepted(
    client: TestClient, partner: str
) -> None:
    """Verified tokens are remembered; the memory must not outlive the token."""
    headers = bearer(hs256(claims("callbacks:read", ttl=2)))
    listing = f"/partners/{partner}/callbacks"
    assert (await client.get(listing, headers=headers)).status == 200

    async def status() -> int:
        return (await client.get(listing, headers=headers)).status

    await eventually(status, lambda code: code == 401, timeout=10, interval=0.2)


async def test_a_token_not_valid_yet(client: TestClient, digest: Digest, partner: str) -> None:
    early = hs256(claims(WRITE, nbf=int(claims()["iat"]) + 3600))
    await assert_refused_write(client, digest, partner, bearer(early), 401)
    started = hs256(claims(WRITE, nbf=int(claims()["iat"]) - 10))
    await assert_write_allowed(client, digest, partner, bearer(started))


async def test_a_token_without_exp(client: TestClient, digest: Digest, partner: str) -> None:
    await assert_refused_write(client, digest, partner, bearer(hs256(claims(WRITE, exp=None))), 401)


async def test_a_wrong_issuer_or_audience(
    make_client: MakeClient, digest: Digest, partner: str
) -> None:
    api = await make_client(jwt_issuer="https://issuer.example", jwt_audience="callbackhub")
    for iss, aud in (
        ("https://evil.example", "callbackhub"),
        ("https://issuer.example", "another-service"),
        ("https://issuer.example", ["another-service"]),
        (None, "callbackhub"),
        ("https://issuer.example", None),
    ):
        wrong = hs256(claims(WRITE, iss=iss, aud=aud))
        await assert_refused_write(api, digest, partner, bearer(wrong), 401)
    right = hs256(claims(WRITE, iss="https://issuer.example", aud="callbackhub"))
    await assert_write_allowed(api, digest, partner, bearer(right))


async def test_a_partner_id_of_another_partner_is_403_everywhere(
    client: TestClient, digest: Digest, partner: str
) -> None:
    mine = str(uuid.uuid4())
    assert (
        await client.post(
            "/partners", json={"name": "Mine", "partnerUniqueId": mine}, headers=auth()
        )
    ).status == 201
    theirs = f"/partners/{partner}"
    setup = await client.put(f"{theirs}/callbacks/1", json=CALLBACK, headers=auth(WRITE))
    assert setup.status == 201
    before = await digest()
    for scopes in (EVERY_SCOPE, f"{EVERY_SCOPE} partners:admin"):
        headers = bearer(hs256(claims(scopes, partner_id=mine)))
        attempts = [
            client.put(f"{theirs}/callbacks/2", json=CALLBACK, headers=headers),
            client.put(f"{theirs}/callbacks/1", json=CALLBACK, headers=headers),
            client.delete(f"{theirs}/callbacks/1", headers=headers),
            client.get(f"{theirs}/callbacks", headers=headers),
            client.get(f"{theirs}/callbacks/1", headers=headers),
            client.get(f"{theirs}/callbacks/1/secret", headers=headers),
            client.post(f"{theirs}/callbacks/1/secret/rotate", headers=headers),
            client.post(f"{theirs}/callbacks/1/echo", json={}, headers=headers),
            client.get(f"{theirs}/notifications", headers=headers),
            client.get(theirs, headers=headers),
            client.delete(theirs, headers=headers),
            client.post("/partners", json={"name": "Another"}, headers=headers),
        ]
        for attempt in attempts:
            response = await attempt
            assert response.status == 403, (response.method, response.url, response.status)
            assert response.content_type == "application/problem+json"
        own = await client.get(f"/partners/{mine}/callbacks", headers=headers)
        assert own.status == 200
    assert changed_tables(before, await digest()) == []


SCOPE_TRICKS: list[tuple[Any, int]] = [
    ("callbacks:write2", 403),
    ("callbacks:*", 403),
    ("*", 403),
    ("callbacks", 403),
    ("callbacks:", 403),
    ("CALLBACKS:WRITE", 403),
    ("Callbacks:Write", 403),
    ("callbacks:writ", 403),
    ("callbacks:wr\u0456te", 401),  # Cyrillic i: not even ASCII
    ("callbacks:read,callbacks:write", 403),
    ("callbacks:read+callbacks:write", 403),
    ("callbacks:read;callbacks:write", 403),
    (["callbacks:write"], 401),
    (["callbacks:read", "callbacks:write"], 401),
    ({"callbacks:write": True}, 401),
    (True, 401),
    (" callbacks:write", 401),
    ("callbacks:write ", 401),
    ("callbacks:read  callbacks:write", 401),
    ("callbacks:read\tcallbacks:write", 401),
    ("callbacks:read\ncallbacks:write", 401),
    ("callbacks:read\u00a0callbacks:write", 401),
    ("callbacks:read\u2003callbacks:write", 401),
    ("\u200bcallbacks:write", 401),
    ("callbacks:write\x00", 401),
    ('"callbacks:write"', 401),
]


async def test_scope_tricks_never_grant_callbacks_write(
    client: TestClient, digest: Digest, partner: str
) -> None:
    """Look-alikes are unknown scopes (403); anything that is not RFC 6749's single-space
    separated printable ASCII is a malformed token (401), never a guess."""
    for scope, status in SCOPE_TRICKS:
        try:
            await assert_refused_write(
                client, digest, partner, bearer(hs256(claims(scope))), status
            )
        except AssertionError as error:
            raise AssertionError(f"scope {scope!r}: {error}") from None


async def test_scopes_under_another_claim_name_grant_nothing(
    client: TestClient, digest: Digest, partner: str
) -> None:
    for claim in ("scp", "scopes", "permissions", "roles"):
        token = hs256(claims(scope=None, **{claim: [WRITE]}))
        await assert_refused_write(client, digest, partner, bearer(token), 403)


async def test_the_exact_scope_does_grant_callbacks_write(
    client: TestClient, digest: Digest, partner: str
) -> None:
    """The control for the tricks above."""
    await assert_write_allowed(
        client, digest, partner, bearer(hs256(claims(f"callbacks:read {WRITE}")))
    )


async def test_a_10_megabyte_authorization_header(
    client: TestClient, digest: Digest, partner: str
) -> None:
    """aiohttp refuses header fields over 8190 bytes itself, before any of our code runs: its
    answer is a plain-text 400, not problem+json. It must be a 4xx, and nothing must change."""
    huge = "Bearer " + hs256(claims(WRITE)) + "A" * (10 * 1024 * 1024)
    before = await digest()
    response = await client.put(
        f"/partners/{partner}/callbacks/2", json=CALLBACK, headers={"Authorization": huge}
    )
    assert 400 <= response.status < 500
    assert len(await response.read()) < 4096
    assert changed_tables(before, await digest()) == []
    assert (await client.get("/health/ready")).status == 200
    await assert_write_allowed(client, digest, partner, auth(WRITE))


async def test_a_token_in_the_query_string_is_ignored(
    client: TestClient, digest: Digest, partner: str
) -> None:
    token = hs256(claims(f"{WRITE} callbacks:read partners:admin"))
    before = await digest()
    for name in ("access_token", "token", "jwt", "bearer", "Authorization"):
        value = f"Bearer {token}" if name == "Authorization" else token
        response = await client.put(
            f"/partners/{partner}/callbacks/2", params={name: value}, json=CALLBACK
        )
        assert response.status == 401, name
        listing = await client.get(f"/partners/{partner}/callbacks", params={name: value})
        assert listing.status == 401, name
    assert changed_tables(before, await digest()) == []


async def test_a_token_in_a_form_body_is_ignored(
    client: TestClient, digest: Digest, partner: str
) -> None:
    """RFC 6750 allows ``access_token`` in a form body; this API does not."""
    token = hs256(claims(WRITE))
    before = await digest()
    response = await client.put(
        f"/partners/{partner}/callbacks/2", data={"access_token": token, "url": CALLBACK["url"]}
    )
    assert response.status == 401
    assert changed_tables(before, await digest()) == []


async def test_a_token_signed_with_a_key_of_the_wrong_curve_or_size(
    make_client: MakeClient, digest: Digest, partner: str
) -> None:
    """ES256 with a configured RSA key, and RS256 with a configured EC key: both refused."""
    rsa_api = await make_client(jwt_public_key=public_pem(rsa_private_key()))
    es256 = jwt.encode(claims(WRITE), ec_private_key(), algorithm="ES256")
    await assert_refused_write(rsa_api, digest, partner, bearer(es256), 401)
    ec_api = await make_client(jwt_public_key=public_pem(ec_private_key()))
    rs256 = jwt.encode(claims(WRITE), rsa_private_key(), algorithm="RS256")
    await assert_refused_write(ec_api, digest, partner, bearer(rs256), 401)


async def test_a_token_with_a_forged_header_segment(
    client: TestClient, digest: Digest, partner: str
) -> None:
    """The header swapped after signing (e.g. to add a kid) breaks the signature."""
    genuine = hs256(claims(WRITE))
    _, payload, signature = genuine.split(".")
    swapped = f"{segment({'alg': 'HS256', 'typ': 'JWT', 'kid': 'x'})}.{payload}.{signature}"
    await assert_refused_write(client, digest, partner, bearer(swapped), 401)
    truncated = f"{genuine.rsplit('.', 1)[0]}.{b64url(b'short')}"
    await assert_refused_write(client, digest, partner, bearer(truncated), 401)
