"""TLS contexts per callback: its private CA (trusted for it alone: verification is never
turned off) and its client certificate, built once per distinct material and reused."""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from pathlib import Path

CACHE_LIMIT = 1000


class TlsContexts:
    def __init__(self) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}

    def context(self, ca: str | None, client: tuple[str, str] | None) -> ssl.SSLContext:
        """``ca``: PEM CA certificates; ``client``: (certificate PEM, private key PEM)."""
        key = hashlib.sha256(repr((ca, client)).encode()).hexdigest()
        found = self._contexts.get(key)
        if found is None:
            if len(self._contexts) >= CACHE_LIMIT:
                self._contexts.clear()
            found = self._contexts[key] = _build(ca, client)
        return found


def _build(ca: str | None, client: tuple[str, str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    if client is not None:
        _load_client_certificate(context, *client)
    return context


def _load_client_certificate(context: ssl.SSLContext, certificate: str, key: str) -> None:
    """The ssl module loads a certificate chain only from files: write both to a private
    folder (mode 0700, files 0600), load them, and remove them at once."""
    with tempfile.TemporaryDirectory(prefix="callbackhub-tls-") as folder:
        paths = Path(folder) / "certificate.pem", Path(folder) / "key.pem"
        for path, text in zip(paths, (certificate, key), strict=True):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
        context.load_cert_chain(*paths)
