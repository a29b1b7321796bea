"""A forwarding HTTP proxy on 127.0.0.1, as a corporate egress proxy would be: the outside world.

It forwards plain ``http://`` requests (absolute-form request line) and tunnels ``CONNECT``
for ``https://``, and records every request it is asked to make, so a test can say that each
attempt and each token request went through it. ``hosts`` is the proxy's own DNS (it resolves
names again, as a real proxy does); names not in it resolve to themselves. With
``credentials`` set it demands them in ``Proxy-Authorization`` and answers 407 without them.
With ``ssl`` it is an ``https://`` proxy (TLS between the client and the proxy).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl as ssl_module
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str  # "host:port" for CONNECT, the absolute URL otherwise
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    hosts: dict[str, str] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None
    ssl: ssl_module.SSLContext | None = None
    requests: list[ProxiedRequest] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url_with_credentials(self) -> str:
        assert self.credentials is not None
        user, password = self.credentials
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [line.split(":", 1) for line in header_lines if ":" in line]
        named = {name.strip().lower(): value.strip() for name, value in headers}
        self.requests.append(ProxiedRequest(method, target, named.get("proxy-authorization")))
        if not self._authorised(named.get("proxy-authorization")):
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
            writer.write(b'Proxy-Authenticate: Basic realm="egress"\r\nContent-Length: 0\r\n\r\n')
            await writer.drain()
            return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
        else:
            await self._forward(method, target, headers, named, reader, writer)

    def _authorised(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return header == f"Basic {expected}"

    def _address(self, host: str, port: int) -> tuple[str, int]:
        return self.hosts.get(host, host), port

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(
            *self._address(host.strip("[]"), int(port))
        )
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await _pipe_both_ways(reader, writer, upstream_reader, upstream_writer)

    async def _forward(
        self,
        method: str,
        target: str,
        headers: list[list[str]],
        named: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """One request, then the connection closes: simple, and enough for a client."""
        url = urlsplit(target)
        assert url.hostname is not None
        body = await reader.readexactly(int(named.get("content-length", "0")))
        upstream_reader, upstream_writer = await asyncio.open_connection(
            *self._address(url.hostname, url.port or 80)
        )
        hop_by_hop = {"connection", "proxy-connection", "proxy-authorization", "keep-alive"}
        kept = [f"{n}:{v}" for n, v in headers if n.strip().lower() not in hop_by_hop]
        path = url.path + (f"?{url.query}" if url.query else "")
        lines = [f"{method} {path or '/'} HTTP/1.1", *kept, "Connection: close", "", ""]
        upstream_writer.write("\r\n".join(lines).encode("latin-1") + body)
        await upstream_writer.drain()
        await _copy(upstream_reader, writer)
        upstream_writer.close()


async def _copy(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, then_close: bool = False
) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    if then_close:  # one side hung up: so does the tunnel's other end
        sink.close()


async def _pipe_both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(
            _copy(reader, upstream_writer, then_close=True),
            _copy(upstream_reader, writer, then_close=True),
        )
    finally:
        upstream_writer.close()
