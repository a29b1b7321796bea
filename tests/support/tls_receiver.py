"""A partner's HTTPS server on 127.0.0.1 with a certificate from a test CA, requiring a client
certificate or not; it records the common name of each client certificate it is shown."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.support.certificates import CertificateAuthority


@dataclass
class TlsReceiver:
    url: str = ""
    clients: list[str] = field(default_factory=list)  # the CN of each client certificate


async def tls_receiver(
    tmp_path: Path, ca: CertificateAuthority, *, require_client: bool
) -> AsyncIterator[TlsReceiver]:
    issued = ca.issue("127.0.0.1", server=True)
    (tmp_path / "server.pem").write_text(issued.certificate)
    (tmp_path / "server.key").write_text(issued.private_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=ca.pem)
    receiver = TlsReceiver()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        receiver.clients.append(subject.get("commonName", ""))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    receiver.url = f"https://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield receiver
    await runner.cleanup()
