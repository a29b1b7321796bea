"""Which callback URLs callbackhub may send to."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


class UrlRejected(ValueError):
    """The callback URL is not acceptable."""


def check_url_syntax(url: str, require_https: bool = False) -> None:
    """An absolute http(s) URL with a host, at most 2048 characters."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise UrlRejected("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise UrlRejected(f"is not a valid URL: {error}") from None
    allowed = ("https",) if require_https else ("https", "http")
    if parts.scheme.lower() not in allowed:
        raise UrlRejected(f"must be an absolute {' or '.join(allowed)} URL")
    if not hostname:
        raise UrlRejected("must have a host")
