"""The fixtures live in tests/support; this file only registers them for every test."""

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.e2e_fixtures",
    "tests.support.portal",
    "tests.support.browser",
    "tests.support.spans",
]


def pytest_report_header(config: object) -> str | None:
    """One line when the portal's browser tests cannot run here, saying how to fix it."""
    from tests.support.browser import INSTALL_HINT, chromium_path

    return INSTALL_HINT if chromium_path() is None else None
