"""Sealing secrets: AES-256-GCM with a fresh nonce, the row as associated data, and keys that
rotate (the first seals, every one opens)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from service.core.encryption import (
    EncryptionKeyError,
    SecretUnreadable,
    ensure_encryption_keys,
    generate_key,
    load_keyring,
    parse_keys,
    sealed_key_id,
)
from service.core.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
ROW = "callbacks/0190a5a4-0000-7000-8000-000000000001/1"


def test_a_sealed_secret_opens_to_itself_and_never_shows_it() -> None:
    keyring = parse_keys(generate_key("k1"), "test")
    sealed = keyring.seal(SECRET, ROW)
    assert sealed.startswith("enc1:k1:")
    assert SECRET not in sealed and SECRET.removeprefix("whsec_") not in sealed
    assert keyring.open(sealed, ROW) == SECRET


def test_each_value_gets_a_fresh_nonce() -> None:
    keyring = parse_keys(generate_key("k1"), "test")
    assert keyring.seal(SECRET, ROW) != keyring.seal(SECRET, ROW)


def test_a_ciphertext_copied_to_another_row_does_not_open() -> None:
    keyring = parse_keys(generate_key("k1"), "test")
    sealed = keyring.seal(SECRET, ROW)
    with pytest.raises(SecretUnreadable, match="does not open"):
        keyring.open(sealed, ROW.replace("/1", "/2"))


def test_a_tampered_ciphertext_does_not_open() -> None:
    keyring = parse_keys(generate_key("k1"), "test")
    sealed = keyring.seal(SECRET, ROW)
    body = bytearray(base64.b64decode(sealed.split(":")[2]))
    body[-1] ^= 1
    tampered = "enc1:k1:" + base64.b64encode(bytes(body)).decode()
    with pytest.raises(SecretUnreadable):
        keyring.open(tampered, ROW)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = generate_key("old"), generate_key("new")
    sealed_before = parse_keys(old, "test").seal(SECRET, ROW)
    both = parse_keys(f"{new},{old}", "test")
    assert both.open(sealed_before, ROW) == SECRET
    assert sealed_key_id(both.seal(SECRET, ROW)) == "new"
    with pytest.raises(SecretUnreadable, match="'old', which is not configured"):
        parse_keys(new, "test").open(sealed_before, ROW)


def test_a_key_under_a_known_id_but_wrong_does_not_open() -> None:
    sealed = parse_keys(generate_key("k1"), "test").seal(SECRET, ROW)
    with pytest.raises(SecretUnreadable):
        parse_keys(generate_key("k1"), "test").open(sealed, ROW)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1", "each key is id:base64key"),
        ("k1:" + base64.b64encode(b"short").decode(), "not 32 bytes"),
        ("k1:not base64!", "not 32 bytes"),
        ("bad id:" + base64.b64encode(b"k" * 32).decode(), "each key is id:base64key"),
        (generate_key("k1") + "," + generate_key("k1"), "appears twice"),
        (" , ", "no key"),
    ],
)
def test_malformed_keys_are_refused_naming_the_variable(text: str, message: str) -> None:
    with pytest.raises(EncryptionKeyError, match=message) as raised:
        parse_keys(text, "CALLBACKHUB_ENCRYPTION_KEYS")
    assert str(raised.value).startswith("CALLBACKHUB_ENCRYPTION_KEYS: ")
    assert "\n" not in str(raised.value)


def test_the_embedded_database_gets_a_key_file_made_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first, created = ensure_encryption_keys(settings)
    path = tmp_path / "data" / "encryption-keys"
    assert created and first.encryption_keys_file == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = ensure_encryption_keys(settings)
    assert not created_again
    sealed = load_keyring(first).seal(SECRET, ROW)
    assert load_keyring(again).open(sealed, ROW) == SECRET


def test_a_configured_database_without_a_key_is_refused_naming_the_variable(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql://db.example/callbackhub")
    settings, created = ensure_encryption_keys(settings)
    assert not created and not (tmp_path / "encryption-keys").exists()
    with pytest.raises(EncryptionKeyError, match=r"^CALLBACKHUB_ENCRYPTION_KEYS is not set"):
        load_keyring(settings)


def test_keys_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(generate_key("a") + "\n" + generate_key("b") + "\n")
    keyring = load_keyring(Settings(encryption_keys_file=path))
    assert keyring.key_ids == ["a", "b"] and keyring.primary == "a"
    with pytest.raises(EncryptionKeyError, match="CALLBACKHUB_ENCRYPTION_KEYS_FILE: cannot read"):
        load_keyring(Settings(encryption_keys_file=tmp_path / "missing"))
