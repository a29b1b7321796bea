"""The portal in a real Chromium, as a partner (and an operator) uses it: every page, each
action, and what must never happen (a script from a payload, a change from a read-only link).
Screenshots of each page, at 1280x800 and 390 px, go to build/portal-screenshots/."""

from __future__ import annotations

import re
import uuid

from playwright.async_api import Locator, Page, expect
from standardwebhooks.webhooks import Webhook

from tests.support.api import create_partner, emit, get_callback, payload, put_callback, settled
from tests.support.browser import Browser
from tests.support.polling import eventually
from tests.support.portal import Portal
from tests.support.receiver import Receiver, status

XSS = "<img src=x onerror=alert(1)>"


async def _partner(portal: Portal, name: str = "Acme Brokers") -> str:
    async with portal.session() as http:
        return await create_partner(http, name)


async def _open(page: Page, link: str) -> None:
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_be_visible()


async def _reload_until_status(page: Page, wanted: str) -> None:
    """The page is server-rendered: reload it until the notification shows ``wanted``."""

    async def shown() -> str:
        await page.reload()
        return await page.locator("h1 .status").inner_text()

    await eventually(shown, lambda text: text == wanted)


def _nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Portal").get_by_role("link", name=name, exact=True)


async def _navigation_is_complete(page: Page) -> None:
    navigation = page.get_by_role("navigation", name="Portal")
    for name in ("Callbacks", "Deliveries", "Event types"):
        await expect(navigation.get_by_role("link", name=name, exact=True)).to_be_visible()
    await expect(navigation.get_by_role("button", name="Sign out")).to_be_visible()


async def test_a_partner_registers_tests_rotates_and_redelivers(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    page = browser.page
    partner = await _partner(portal)
    await _open(page, await portal.link(partner))

    # The Callbacks page: every type, none registered yet.
    await expect(page.get_by_role("heading", name="Callbacks", exact=True)).to_be_visible()
    await _navigation_is_complete(page)
    await expect(page.get_by_role("cell", name="not registered")).to_have_count(3)
    await browser.screenshot("01-callbacks-empty")

    # Register type 2; a private address is refused next to the field first.
    await page.get_by_role("link", name="Notes").click()
    await page.get_by_label("URL").fill("http://10.1.2.3/hook")
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#url-error")).to_contain_text("10.1.2.3")
    await browser.screenshot("02-callback-refused-url")
    await page.get_by_label("URL").fill(receiver.url)
    await page.get_by_label("Description").fill("Our CRM")
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_role("status")).to_contain_text("Registered")
    await page.get_by_role("button", name="Reveal signing secret").click()
    secret = await page.locator("#signing-secret").inner_text()
    assert secret.startswith("whsec_")
    await browser.screenshot("03-callback")

    # Send a test notification: the example is valid as it stands; the receiver verifies it.
    await page.get_by_role("link", name="Send test notification").click()
    example = await page.get_by_label("Payload").input_value()
    assert '"processUniqueId"' in example and '"noteUniqueId"' in example
    await browser.screenshot("04-test-notification")
    await page.get_by_role("button", name="Send", exact=True).click()
    # The notification's page, not a reload racing the form's own navigation to it.
    await expect(page).to_have_url(re.compile(r"/portal/notifications/[0-9a-f-]+$"))
    await expect(page.locator("h1 .status")).to_be_visible()
    [received] = await receiver.wait_for(1)
    Webhook(secret).verify(received.body, received.headers)
    await _reload_until_status(page, "delivered")
    await expect(page.locator("#payload")).to_contain_text('"noteUniqueId"')
    await page.get_by_text("Request headers").first.click()
    headers = page.locator("pre.headers").first
    await expect(headers).to_contain_text(f"webhook-id: {received.headers['webhook-id']}")
    await expect(headers).to_contain_text(received.headers["webhook-signature"])
    await expect(page.get_by_role("article", name="Attempt 1")).to_contain_text("HTTP 200")
    await browser.screenshot("05-notification")

    # Redeliver: the same webhook-id comes again.
    await page.get_by_role("button", name="Redeliver").click()
    await expect(page.get_by_role("status")).to_contain_text("Queued again")
    second = (await receiver.wait_for(2))[1]
    assert second.headers["webhook-id"] == received.headers["webhook-id"]

    # Rotate the secret, confirming; both secrets sign for the overlap.
    await _nav(page, "Callbacks").click()
    await page.get_by_role("link", name="Notes").click()
    await page.get_by_role("button", name="Rotate secret").click()
    await expect(page.get_by_role("status")).to_contain_text("with the previous one too")
    assert browser.dialogs[-1].startswith("confirm: Rotate the signing secret?")
    new_secret = await page.locator("#signing-secret").inner_text()
    assert new_secret != secret

    # The Callbacks page now shows the callback, its state and the chart.
    await _nav(page, "Callbacks").click()
    row = page.get_by_role("row").filter(has_text="Notes")
    await expect(row).to_contain_text(receiver.url)
    await expect(row).to_contain_text("enabled")
    await expect(page.get_by_role("img")).to_have_attribute("aria-labelledby", "chart-desc")
    assert int(await page.locator("g.hour").last.get_attribute("data-delivered") or 0) >= 1
    await browser.screenshot("06-callbacks")

    # Event types and History.
    await _nav(page, "Event types").click()
    await expect(page.get_by_text("pip install standardwebhooks")).to_be_visible()
    await expect(page.get_by_text("npm install standardwebhooks")).to_be_visible()
    await browser.screenshot("07-event-types")
    await _nav(page, "History").click()
    for action in ("callback.created", "callback.secret_revealed", "callback.secret_rotated"):
        await expect(page.get_by_role("cell", name=action).first).to_be_visible()
    await expect(page.get_by_role("cell", name=re.compile("^portal: partner"))).not_to_have_count(0)
    await browser.screenshot("08-history")

    # Delete, confirming.
    await _nav(page, "Callbacks").click()
    await page.get_by_role("link", name="Notes").click()
    await page.get_by_role("button", name="Delete callback").click()
    await expect(page.get_by_role("status")).to_have_text("The callback was deleted.")
    await expect(page.get_by_role("cell", name="not registered")).to_have_count(3)

    # Sign out: the session is over.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out")).to_be_visible()
    response = await page.goto(portal.url + "/portal/")
    assert response is not None and response.status == 401


async def test_deliveries_filter_and_page_through_200_notifications(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    partner = await _partner(portal)
    subject = uuid.uuid4()
    async with portal.session() as api:
        await put_callback(api, partner, 2, receiver.url)
        await put_callback(api, partner, 3, receiver.url)
        for index in range(199):
            await emit(api, partner, 2 + index % 2, payload(2 + index % 2))  # type: ignore[arg-type]
        await emit(api, partner, 3, payload(3, subject))  # type: ignore[arg-type]
    await receiver.wait_for(200, timeout=60)
    page = browser.page
    await _open(page, await portal.link(partner, access="read"))
    await _nav(page, "Deliveries").click()
    await expect(page.get_by_text("200 notifications, showing 1\u201325")).to_be_visible()
    await browser.screenshot("09-deliveries")
    await page.get_by_role("link", name="Older").click()
    await expect(page.get_by_text("showing 26\u201350")).to_be_visible()

    await page.get_by_label("Type").select_option(label="Document")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("100 notifications")).to_be_visible()
    await page.get_by_label("Subject id").fill(str(subject))
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("1 notification,")).to_be_visible()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("No notifications match.")).to_be_visible()
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Subject id").fill("not-a-uuid")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("ul.error")).to_contain_text("subject")


async def test_redeliver_failed_queues_what_failed_since_a_date(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    partner = await _partner(portal)
    receiver.default = status(500)
    async with portal.session() as api:
        await put_callback(api, partner, 2, receiver.url)
        notification = await emit(api, partner, 2, payload(2))  # type: ignore[arg-type]
        await settled(api, partner, notification, "failed")  # type: ignore[arg-type]
    page = browser.page
    await _open(page, await portal.link(partner))
    await _nav(page, "Deliveries").click()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("1 notification,")).to_be_visible(timeout=15_000)
    receiver.default = status(200)
    attempts = len(receiver.received)
    await page.get_by_role("button", name="Redeliver failed").click()
    await expect(page.get_by_text("1 failed notification since")).to_be_visible()
    await receiver.wait_for(attempts + 1)


async def test_a_payload_that_looks_like_html_is_shown_as_text_and_runs_nothing(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    partner = await _partner(portal)
    async with portal.session() as api:
        await put_callback(api, partner, 2, receiver.url, description=XSS)
        notification = await emit(api, partner, 2, payload(2, text=XSS, author=XSS))  # type: ignore[arg-type]
    receiver.default = status(500, body=XSS)
    page = browser.page
    await _open(page, await portal.link(partner))
    await page.goto(f"{portal.url}/portal/notifications/{notification}")
    await expect(page.locator("#payload")).to_contain_text(XSS)
    await page.goto(f"{portal.url}/portal/callbacks/2")
    await expect(page.get_by_label("Description")).to_have_value(XSS)
    await page.goto(f"{portal.url}/portal/history")
    await expect(page.get_by_text(XSS).first).to_be_visible()
    assert browser.dialogs == []
    assert await page.locator("img[src=x]").count() == 0


async def test_a_read_only_link_offers_no_button_that_changes_anything(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    partner = await _partner(portal)
    async with portal.session() as api:
        await put_callback(api, partner, 2, receiver.url)
        notification = await emit(api, partner, 2, payload(2))  # type: ignore[arg-type]
    page = browser.page
    await _open(page, await portal.link(partner, access="read"))
    await expect(page.get_by_text("read-only")).to_be_visible()
    for path in (
        "/portal/callbacks/2",
        f"/portal/notifications/{notification}",
        "/portal/notifications",
    ):
        await page.goto(portal.url + path)
        buttons = await page.get_by_role("button").all_inner_texts()
        assert (
            buttons == ["Sign out"]
            or buttons == ["Filter", "Sign out"]
            or sorted(buttons) == ["Filter", "Sign out"]
        ), (path, buttons)


async def test_an_operator_sees_every_partner_and_opens_one(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    healthy, broken = await _partner(portal, "Healthy Ltd"), await _partner(portal, "Broken Ltd")
    async with portal.session() as api:
        await put_callback(api, healthy, 2, receiver.url)
        await put_callback(api, broken, 2, receiver.url, enabled=False)
    page = browser.page
    await _open(page, await portal.link(None))
    await expect(page.get_by_role("heading", name="Partners")).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text="Broken Ltd")).to_contain_text(
        "1 disabled"
    )
    await expect(page.get_by_role("row").filter(has_text="Healthy Ltd")).to_contain_text("healthy")
    await browser.screenshot("10-operator")
    await page.get_by_role("button", name="Open Broken Ltd").click()
    await expect(page.get_by_role("heading", name="Callbacks", exact=True)).to_be_visible()
    await expect(page.locator(".context")).to_contain_text("Broken Ltd")
    await expect(page.get_by_role("row").filter(has_text="Notes")).to_contain_text("disabled")


async def test_a_used_link_shows_a_page_that_says_so(portal: Portal, browser: Browser) -> None:
    link = await portal.link(await _partner(portal))
    page = browser.page
    await _open(page, link)
    fresh = await page.context.browser.new_context()  # type: ignore[union-attr]
    other = await fresh.new_page()
    response = await other.goto(link)
    assert response is not None and response.status == 403
    await expect(other.get_by_text("used already or has expired")).to_be_visible()
    await fresh.close()


async def test_a_callback_whose_circuit_opened_says_so(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    """Five refusals in a row open the circuit (the tests' probe waits 0.1 s, so the partner is
    held at its longest probe interval, 0.4 s, while it keeps refusing)."""
    receiver.default = status(503)
    partner = await _partner(portal)
    async with portal.session() as api:
        await put_callback(api, partner, 2, receiver.url, maxInFlight=3)
        for _ in range(8):
            await emit(api, partner, 2, payload(2))  # type: ignore[arg-type]
    await receiver.wait_for(5)
    page = browser.page
    await _open(page, await portal.link(partner))

    async def badge() -> str:
        await page.reload()
        return await page.get_by_role("row", name=re.compile("Notes")).inner_text()

    await eventually(badge, lambda text: "circuit open" in text)
    await browser.screenshot("13-callbacks-circuit-open")
    await page.get_by_role("link", name="Notes").click()
    health = page.locator("#health")
    await expect(health).to_contain_text(re.compile(r"circuit (open|probing) after \d+ failed"))
    await expect(page.locator("#limits")).to_contain_text("3 requests at once, no rate limit")
    await browser.screenshot("14-callback-circuit-open")


async def test_a_partner_sets_and_clears_the_limits_of_a_callback(
    portal: Portal, browser: Browser, receiver: Receiver
) -> None:
    partner = await _partner(portal)
    async with portal.session() as api:
        await put_callback(api, partner, 2, receiver.url)
    page = browser.page
    await _open(page, await portal.link(partner))
    await page.get_by_role("link", name="Notes").click()
    await expect(page.locator("#limits")).to_contain_text("8 requests at once (default)")

    # Out of range: the browser holds the form back; posted anyway (its checks off), the page
    # says why next to the field, and nothing changes.
    await page.get_by_label("Requests at once").fill("300")
    await page.get_by_role("button", name="Save").click()
    assert not await page.get_by_label("Requests at once").evaluate("e => e.validity.valid")
    await page.locator("form:has(#max_in_flight)").evaluate("form => { form.noValidate = true }")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#max_in_flight-error")).to_contain_text("256")
    await browser.screenshot("15-callback-limit-refused")
    async with portal.session() as api:
        unchanged = await get_callback(api, partner, 2)
    assert unchanged.get("maxInFlight") is None

    await page.get_by_label("Requests at once").fill("3")
    await page.get_by_label("Requests per second").fill("2.5")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved")
    await expect(page.locator("#limits")).to_contain_text("3 requests at once, 2.5 per second")
    await browser.screenshot("16-callback-limits")
    async with portal.session() as api:
        limited = await get_callback(api, partner, 2)
    assert (limited["maxInFlight"], limited["maxPerSecond"]) == (3, 2.5)

    # Emptied: the service default again, and no rate limit.
    await page.get_by_label("Requests at once").fill("")
    await page.get_by_label("Requests per second").fill("")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved")
    await expect(page.locator("#limits")).to_contain_text("8 requests at once (default), no rate")
    async with portal.session() as api:
        cleared = await get_callback(api, partner, 2)
    assert cleared.get("maxInFlight") is None and cleared.get("maxPerSecond") is None
