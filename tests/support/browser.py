"""A real Chromium for the portal tests: Debian's (``apt-get install chromium``), driven by
Playwright for Python. Playwright's own browser download is never used."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Dialog, Page, async_playwright

# The binary itself: Debian's /usr/bin/chromium is a shell wrapper around it.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
INSTALL_HINT = "portal browser tests skipped: no Chromium (apt-get install chromium)"
SCREENSHOTS = Path(os.environ.get("CALLBACKHUB_SCREENSHOTS", "build/portal-screenshots"))
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    configured = os.environ.get("CALLBACKHUB_TEST_CHROMIUM")
    if configured:
        return configured
    for candidate in CANDIDATES:
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    return None


@dataclass
class Browser:
    page: Page
    dialogs: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> None:
        """The current page at 1280x800 and at a phone's 390 px, full length."""
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await self.page.set_viewport_size(size)
            await self.page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
        await self.page.set_viewport_size(DESKTOP)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh Chromium per test; every dialog it opens is recorded, and accepted."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CALLBACKHUB_REQUIRE_BROWSER"):
            pytest.fail(INSTALL_HINT.replace("skipped", "required"))
        pytest.skip(INSTALL_HINT)
    await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        context = await chromium.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
        opened = Browser(await context.new_page())

        async def on_dialog(dialog: Dialog) -> None:
            opened.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.accept()

        opened.page.on("dialog", on_dialog)
        yield opened
        await chromium.close()
