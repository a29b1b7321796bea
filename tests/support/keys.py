"""The suite's encryption key (a fixed one, so a test can open what the service sealed)."""

from __future__ import annotations

from service.core.encryption import Keyring, parse_keys

ENCRYPTION_KEYS = "test1:o+IcamCgJs9D4Ow4hVBdK21ytsHqVvsKZHrXS8Hot8w="


def suite_keyring() -> Keyring:
    return parse_keys(ENCRYPTION_KEYS, "the suite's key")
