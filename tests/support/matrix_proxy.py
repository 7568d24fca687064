"""The production proxy's Matrix routing, in the test's event loop: requests whose path
matches :func:`bridge.deployment.generic_worker_regex` (the rule the Caddyfile carries) go
to the generic worker, every other path to the main process.

::

    client --http--> MatrixProxy :port --path matches the worker regex--> generic_worker1
                                        '--anything else-----------------> main
    proxy.served[(upstream, path)] counts what went where
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Self

import aiohttp
from aiohttp import web

from bridge.deployment import generic_worker_regex

# Headers that belong to one connection, not to the request (RFC 9110, 7.6.1).
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class MatrixProxy:
    """A small reverse proxy: ``worker_url`` for the generic worker's paths, else ``main_url``."""

    def __init__(self, port: int, main_url: str, worker_url: str) -> None:
        self.port = port
        self.upstreams = {"main": main_url.rstrip("/"), "generic_worker": worker_url.rstrip("/")}
        self.worker_paths = re.compile(generic_worker_regex())
        self.served: Counter[tuple[str, str]] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstream_for(self, path: str) -> str:
        return "generic_worker" if self.worker_paths.search(path) else "main"

    def count(self, upstream: str, path_contains: str = "") -> int:
        return sum(
            n for (up, path), n in self.served.items() if up == upstream and path_contains in path
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        upstream = self.upstream_for(request.path)
        self.served[(upstream, request.path)] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["X-Forwarded-For"] = request.remote or "127.0.0.1"
        headers["X-Forwarded-Proto"] = request.scheme
        async with self._session.request(
            request.method,
            self.upstreams[upstream] + request.rel_url.path_qs,
            headers=headers,
            data=await request.read() if request.body_exists else None,
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, headers=out, body=body)

    async def start(self) -> Self:
        # No client timeout of our own: /sync long-polls for as long as the client asks.
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # On close, a long-polling /sync in flight is not waited for.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
