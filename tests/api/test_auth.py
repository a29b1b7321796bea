"""Bearer JWT authentication (issue 2, section Auth): every way a token can be wrong is a 401 with
``WWW-Authenticate: Bearer error="invalid_token"``; a valid token without the scope is a 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from tests.support.settings import make_settings
from tests.support.tokens import (
    JWT_SECRET,
    bearer,
    claims,
    ec_private_key,
    hmac_signed,
    hs256,
    public_pem,
    rsa_private_key,
    unsigned,
)

MakeClient = Callable[..., Awaitable[TestClient]]
INVALID_TOKEN = 'Bearer error="invalid_token"'


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path, database: str) -> MakeClient:
    """An API on the test database with settings overridden (JWT_AUDIENCE, JWT_PUBLIC_KEY, ...)."""

    async def make(**overrides: Any) -> TestClient:
        return await aiohttp_client(create_app(make_settings(tmp_path, **overrides), database))

    return make


def listing(partner: str) -> str:
    return f"/partners/{partner}/callbacks"


async def assert_unauthorized(response: ClientResponse) -> None:
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["detail"]


async def test_a_valid_token_is_accepted(client: TestClient, partner: str) -> None:
    response = await client.get(listing(partner), headers=bearer(hs256(claims())))
    assert response.status == 200
    assert "WWW-Authenticate" not in response.headers


async def test_no_authorization_header_is_401(client: TestClient, partner: str) -> None:
    await assert_unauthorized(await client.get(listing(partner)))


WRONG_HEADERS = [
    "Basic dXNlcjpwYXNzd29yZA==",
    "Token {token}",
    "JWT {token}",
    "{token}",
    "Bearer",
    "Bearer ",
    "Bearer not-a-jwt",
    "Bearer a.b.c",
    "Bearer {token}.extra",
]


async def test_a_wrong_scheme_or_malformed_header_is_401(client: TestClient, partner: str) -> None:
    for header in WRONG_HEADERS:
        value = header.format(token=hs256(claims()))
        response = await client.get(listing(partner), headers={"Authorization": value})
        try:
            await assert_unauthorized(response)
        except AssertionError as error:
            raise AssertionError(f"{header!r}: {error}") from None


async def test_the_scheme_is_case_insensitive(client: TestClient, partner: str) -> None:
    response = await client.get(
        listing(partner), headers={"Authorization": f"bearer {hs256(claims())}"}
    )
    assert response.status == 200


async def test_a_token_signed_with_another_secret_is_401(client: TestClient, partner: str) -> None:
    forged = hs256(claims(), secret="another-secret-that-is-long-enough-for-hs256-0123")
    await assert_unauthorized(await client.get(listing(partner), headers=bearer(forged)))


async def test_a_token_whose_claims_were_changed_after_signing_is_401(
    client: TestClient, partner: str
) -> None:
    header, _, signature = hs256(claims("callbacks:read")).split(".")
    tampered_claims = hs256(claims("partners:admin")).split(".")[1]
    tampered = f"{header}.{tampered_claims}.{signature}"
    await assert_unauthorized(await client.get("/partners", headers=bearer(tampered)))


async def test_alg_none_is_401(client: TestClient, partner: str) -> None:
    for alg in ("none", "None", "NONE"):
        token = unsigned(claims("partners:admin callbacks:read"), alg=alg)
        await assert_unauthorized(await client.get(listing(partner), headers=bearer(token)))


async def test_an_expired_token_is_401(client: TestClient, partner: str) -> None:
    expired = hs256(claims(ttl=-10))
    await assert_unauthorized(await client.get(listing(partner), headers=bearer(expired)))


async def test_a_token_without_exp_is_401(client: TestClient, partner: str) -> None:
    forever = hs256(claims(exp=None))
    await assert_unauthorized(await client.get(listing(partner), headers=bearer(forever)))


async def test_audience_is_checked_when_configured(make_client: MakeClient, partner: str) -> None:
    api = await make_client(jwt_audience="callbackhub")
    for wrong in (claims(aud="someone-else"), claims(), claims(aud=["other", "more"])):
        await assert_unauthorized(await api.get(listing(partner), headers=bearer(hs256(wrong))))
    for right in (claims(aud="callbackhub"), claims(aud=["other", "callbackhub"])):
        assert (await api.get(listing(partner), headers=bearer(hs256(right)))).status == 200


async def test_issuer_is_checked_when_configured(make_client: MakeClient, partner: str) -> None:
    api = await make_client(jwt_issuer="https://issuer.example")
    for wrong in (claims(iss="https://evil.example"), claims()):
        await assert_unauthorized(await api.get(listing(partner), headers=bearer(hs256(wrong))))
    right = claims(iss="https://issuer.example")
    assert (await api.get(listing(partner), headers=bearer(hs256(right)))).status == 200


async def test_audience_and_issuer_are_not_required_when_not_configured(
    client: TestClient, partner: str
) -> None:
    token = hs256(claims(aud="anyone", iss="anybody"))
    assert (await client.get(listing(partner), headers=bearer(token))).status == 200


@pytest.mark.parametrize(
    ("algorithm", "make_key"), [("RS256", rsa_private_key), ("ES256", ec_private_key)]
)
async def test_public_key_tokens_are_accepted_when_the_key_is_configured(
    make_client: MakeClient, partner: str, algorithm: str, make_key: Callable[[], Any]
) -> None:
    key = make_key()
    api = await make_client(jwt_public_key=public_pem(key))
    token = jwt.encode(claims(), key, algorithm=algorithm)
    assert (await api.get(listing(partner), headers=bearer(token))).status == 200
    # The shared secret keeps working next to the public key.
    assert (await api.get(listing(partner), headers=bearer(hs256(claims())))).status == 200


@pytest.mark.parametrize(
    ("algorithm", "make_key"), [("RS256", rsa_private_key), ("ES256", ec_private_key)]
)
async def test_public_key_tokens_are_refused_without_a_configured_key(
    client: TestClient, partner: str, algorithm: str, make_key: Callable[[], Any]
) -> None:
    token = jwt.encode(claims(), make_key(), algorithm=algorithm)
    await assert_unauthorized(await client.get(listing(partner), headers=bearer(token)))


async def test_a_token_signed_by_another_key_pair_is_401(
    make_client: MakeClient, partner: str
) -> None:
    api = await make_client(jwt_public_key=public_pem(rsa_private_key()))
    stranger = jwt.encode(claims(), rsa_private_key(), algorithm="RS256")
    await assert_unauthorized(await api.get(listing(partner), headers=bearer(stranger)))


async def test_a_token_of_the_other_key_type_is_401(make_client: MakeClient, partner: str) -> None:
    """An RSA key is configured: an ES256 token (whatever key signed it) cannot pass."""
    api = await make_client(jwt_public_key=public_pem(rsa_private_key()))
    token = jwt.encode(claims(), ec_private_key(), algorithm="ES256")
    await assert_unauthorized(await api.get(listing(partner), headers=bearer(token)))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_the_algorithm_list_comes_from_configuration_not_the_token(
    client: TestClient, partner: str
) -> None:
    """Signed with the right secret, but with an algorithm the configuration does not list."""
    for algorithm in ("HS384", "HS512"):
        token = jwt.encode(claims(), JWT_SECRET, algorithm=algorithm)
        await assert_unauthorized(await client.get(listing(partner), headers=bearer(token)))


async def test_hs256_is_refused_when_only_a_public_key_is_configured(
    make_client: MakeClient, partner: str
) -> None:
    key = rsa_private_key()
    api = await make_client(jwt_secret=None, jwt_public_key=public_pem(key))
    await assert_unauthorized(await api.get(listing(partner), headers=bearer(hs256(claims()))))
    # Even an HMAC over the secret the attacker might guess (the empty key) is refused.
    empty_key = hmac_signed(claims(), b"")
    await assert_unauthorized(await api.get(listing(partner), headers=bearer(empty_key)))
    rs256 = jwt.encode(claims(), key, algorithm="RS256")
    assert (await api.get(listing(partner), headers=bearer(rs256))).status == 200


async def test_a_valid_token_without_the_scope_is_403(client: TestClient, partner: str) -> None:
    response = await client.get(listing(partner), headers=bearer(hs256(claims("callbacks:write"))))
    assert response.status == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 403
    assert "callbacks:read" in body["detail"]


async def test_a_token_without_any_scope_is_403(client: TestClient, partner: str) -> None:
    response = await client.get(listing(partner), headers=bearer(hs256(claims(scope=None))))
    assert response.status == 403


async def test_the_token_is_checked_before_the_path(client: TestClient) -> None:
    """Without a valid token a malformed path is still a 401: nothing is learnt about paths."""
    await assert_unauthorized(await client.get("/partners/not-a-uuid/callbacks"))
    await assert_unauthorized(await client.put("/partners/not-a-uuid/callbacks/x", data=b"{"))


async def test_health_and_docs_need_no_token(client: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/openapi.json", "/docs"):
        assert (await client.get(path)).status == 200, path
