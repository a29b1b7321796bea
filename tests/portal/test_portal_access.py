"""The portal over plain HTTP: links and sessions, CSRF, the read-only rule, the security
headers, and one partner never seeing another's notifications."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.support.api import create_partner, emit, payload, put_callback
from tests.support.cli import run
from tests.support.portal import Portal, csrf_of
from tests.support.processes import callbackhub_env
from tests.support.tokens import auth

aio_session_skip = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def _partner(portal: Portal, name: str = "Acme Brokers") -> str:
    async with portal.session() as http:
        return await create_partner(http, name)


async def test_a_link_opens_one_session_and_only_once(portal: Portal, database: str) -> None:
    partner = await _partner(portal)
    link = await portal.link(partner)
    assert link.startswith(portal.url + "/portal/login?code=")
    code = link.split("code=")[1]

    async with portal.session() as browser:
        async with browser.get(link, allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/portal/"
            cookie = response.cookies["callbackhub_portal"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
            assert cookie["path"] == "/portal" and not cookie["secure"]
            assert int(cookie["max-age"]) <= 3600
        async with browser.get("/portal/") as response:
            assert response.status == 200
            assert "Acme Brokers" in await response.text()
    async with portal.session() as again, again.get(link) as response:
        assert response.status == 403
        assert "used already or has expired" in await response.text()
        assert "callbackhub_portal" not in response.cookies

    connection = await asyncpg.connect(database)
    try:
        stored = await connection.fetch("SELECT code_hash FROM portal_links")
        sessions = await connection.fetchval("SELECT count(*) FROM portal_sessions")
        dump = [bytes(row["code_hash"]) for row in stored]
    finally:
        await connection.close()
    assert sessions == 1
    assert code.encode() not in b"".join(dump)  # only its hash is kept


async def test_an_expired_link_opens_nothing(portal: Portal, database: str) -> None:
    link = await portal.link(await _partner(portal), ttl=60)
    connection = await asyncpg.connect(database)
    try:
        await connection.execute("UPDATE portal_links SET expires_at = now() - interval '1 s'")
    finally:
        await connection.close()
    async with portal.session() as browser, browser.get(link) as response:
        assert response.status == 403
        assert "callbackhub_portal" not in response.cookies


async def test_without_a_session_nothing_is_shown(portal: Portal) -> None:
    async with portal.session() as browser:
        for path in ("/portal/", "/portal/notifications", "/portal/event-types"):
            async with browser.get(path) as response:
                assert response.status == 401
                assert "Ask the platform for a new portal link" in await response.text()
        async with browser.get("/portal", allow_redirects=False) as response:
            assert response.status == 308 and response.headers["Location"] == "/portal/"


async def test_every_page_carries_the_security_headers(portal: Portal) -> None:
    link = await portal.link(await _partner(portal))
    async with portal.session() as browser, browser.get(link) as response:
        assert response.status == 200
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "portal", [{"portal_frame_ancestors": "https://platform.example"}], indirect=True
)
async def test_the_portal_can_be_framed_where_the_operator_allows(portal: Portal) -> None:
    async with portal.session() as browser, browser.get("/portal/") as response:
        assert (
            "frame-ancestors https://platform.example"
            in (response.headers["Content-Security-Policy"])
        )


async def test_a_post_without_the_sessions_csrf_token_changes_nothing(portal: Portal) -> None:
    partner = await _partner(portal)
    async with portal.session() as other, other.get(await portal.link(partner)) as response:
        other_csrf = csrf_of(await response.text())
    async with portal.session() as browser:
        async with browser.get(await portal.link(partner)) as response:
            own_csrf = csrf_of(await response.text())
        form = {"url": "https://partner.example/hook", "enabled": "on"}
        for token in (None, other_csrf, own_csrf[:-2] + "xx"):
            data = form | ({"csrf": token} if token else {})
            async with browser.post("/portal/callbacks/2", data=data) as response:
                assert response.status == 403
        async with browser.get("/portal/callbacks/2") as response:
            assert "No callback is registered" in await response.text()
        async with browser.post(
            "/portal/callbacks/2", data=form | {"csrf": own_csrf}, allow_redirects=False
        ) as response:
            assert response.status == 303


async def test_a_read_only_session_changes_nothing_whatever_it_sends(portal: Portal) -> None:
    partner = await _partner(portal)
    async with portal.session() as api:
        await put_callback(api, partner, 2, "https://partner.example/hook")
    async with portal.session() as browser:
        async with browser.get(await portal.link(partner, access="read")) as response:
            page = await response.text()
            csrf = csrf_of(page)
            assert "read-only" in page
        async with browser.get("/portal/callbacks/2") as response:
            page = await response.text()
            for button in ("Reveal signing secret", "Rotate secret", "Delete callback", ">Save<"):
                assert button not in page
        posts = {
            "/portal/callbacks/2": {"url": "https://evil.example/hook", "enabled": "on"},
            "/portal/callbacks/2/secret": {},
            "/portal/callbacks/2/secret/rotate": {},
            "/portal/callbacks/2/delete": {},
            "/portal/notifications/redeliver-failed": {"since": "2020-01-01"},
            "/portal/callbacks/2/test": {"payload": "{}"},
        }
        for path, data in posts.items():
            async with browser.post(path, data=data | {"csrf": csrf}) as response:
                assert response.status == 403, path
                assert "read-only" in await response.text()
    async with portal.session() as api:
        response = await api.get(f"/partners/{partner}/callbacks/2", headers=auth())
        assert (await response.json())["url"] == "https://partner.example/hook"


async def test_another_partners_notification_is_not_found(portal: Portal) -> None:
    mine, theirs = await _partner(portal, "Mine"), await _partner(portal, "Theirs")
    async with portal.session() as api:
        await put_callback(api, theirs, 2, "https://theirs.example/hook")
        client = api
        secret_id = await emit(client, theirs, 2, payload(2, text="their private note"))  # type: ignore[arg-type]
    async with portal.session() as browser:
        await browser.get(await portal.link(mine))
        for path in (f"/portal/notifications/{secret_id}", f"/portal/notifications/{uuid.uuid4()}"):
            async with browser.get(path) as response:
                assert response.status == 404
                text = await response.text()
                assert "their private note" not in text and secret_id not in text
        async with browser.get("/portal/notifications") as response:
            assert secret_id not in await response.text()


async def test_an_operator_can_end_every_session_of_a_partner(portal: Portal) -> None:
    partner = await _partner(portal)
    async with portal.session() as browser:
        await browser.get(await portal.link(partner))
        async with browser.get("/portal/") as response:
            assert response.status == 200
        async with portal.session() as api:
            revoked = await api.delete(f"/partners/{partner}/portal-sessions", headers=auth())
            assert (await revoked.json()) == {"revoked": 1}
            history = await api.get(f"/partners/{partner}/audit-events", headers=auth())
            actions = [e["action"] for e in (await history.json())["items"]]
            assert actions[:2] == ["portal.sessions_revoked", "portal.link_issued"]
        async with browser.get("/portal/") as response:
            assert response.status == 401


async def test_sign_out_ends_the_session(portal: Portal) -> None:
    async with portal.session() as browser:
        async with browser.get(await portal.link(await _partner(portal), access="read")) as r:
            csrf = csrf_of(await r.text())
        async with browser.post("/portal/sign-out", data={"csrf": csrf}) as response:
            assert response.status == 200
            assert "You are signed out" in await response.text()
        async with browser.get("/portal/") as response:
            assert response.status == 401


async def test_links_come_from_admins_and_service_tokens_only(portal: Portal) -> None:
    partner = await _partner(portal)
    path = f"/partners/{partner}/portal-links"
    async with portal.session() as api:
        service = await api.post(path, json={}, headers=auth("portal:links"))
        assert service.status == 201
        assert (await service.json())["url"].startswith(portal.url + "/portal/login?code=")
        bound = await api.post(path, json={}, headers=auth("portal:links", partner=partner))
        assert bound.status == 403
        operator = await api.post("/portal-links", json={}, headers=auth("portal:links"))
        assert operator.status == 403
        for body in ({"expiresIn": 59}, {"expiresIn": 604801}, {"access": "admin"}):
            response = await api.post(path, json=body, headers=auth())
            assert response.status == 400
        unknown = await api.post(f"/partners/{uuid.uuid4()}/portal-links", json={}, headers=auth())
        assert unknown.status == 404


async def test_the_cli_prints_a_link_that_opens_the_portal(
    portal: Portal, database: str, tmp_path: object
) -> None:
    partner = await _partner(portal)
    env = callbackhub_env(database, tmp_path, public_url=portal.url)  # type: ignore[arg-type]
    done = await run("portal-link", "--partner", partner, "--read-only", "--ttl", "600", env=env)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    async with portal.session() as browser, browser.get(link) as response:
        assert response.status == 200
        assert "read-only" in await response.text()
    await asyncio.sleep(0)
