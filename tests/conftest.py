"""The fixtures live in tests/support; this file only registers them for every test."""

pytest_plugins = ["tests.support.fixtures", "tests.support.e2e_fixtures"]
