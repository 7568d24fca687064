"""Request dependencies, as ``Annotated`` aliases so a route's signature reads as its contract."""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bridge.audit import Access
from bridge.directory import ClientRef, normalise_fingerprint
from bridge.errors import ErrorCode, WijkbrugError
from bridge.service import Bridge


async def get_bridge(request: Request) -> Bridge:
    # async, though it awaits nothing: FastAPI runs a plain def dependency in a worker
    # thread, a round trip every request would pay for a dictionary lookup.
    bridge: Bridge = request.app.state.bridge
    return bridge


BridgeDep = Annotated[Bridge, Depends(get_bridge)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes: a huge body
    is never read into memory whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WijkbrugError(ErrorCode.TOO_LARGE, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WijkbrugError(ErrorCode.TOO_LARGE, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def message_body_limit(bridge: Bridge) -> int:
    """How large a posted message may be: 1 MiB of message, plus its files in base64."""
    return 1024 * 1024 + (bridge.settings.files.max_bytes * 4 + 2) // 3


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_client(request: Request, bridge: BridgeDep) -> ClientRef:
    """The integration client of the bearer token; 401 without a valid one."""
    token = bearer_token(request)
    if token is None:
        raise WijkbrugError(ErrorCode.UNAUTHORIZED, "missing bearer token (Authorization header)")
    client = await asyncio.to_thread(bridge.store.client_for_token, token)
    if client is None:
        raise WijkbrugError(ErrorCode.UNAUTHORIZED, "unknown or revoked token")
    if client.cert_sha256 is not None:
        _check_certificate(request, bridge, client.cert_sha256)
    limiter: ClientLimiter | None = request.app.state.limiter
    if limiter is not None:
        limiter.check(client)
    return client


def _check_certificate(request: Request, bridge: Bridge, expected: str) -> None:
    """A client bound to a certificate must come through the proxy with that one."""
    header = bridge.settings.http.client_certificate_header
    if header is None:
        raise WijkbrugError(
            ErrorCode.UNAUTHORIZED,
            "this client must present a certificate, and this server takes none "
            "(http.client_certificate_header is not set)",
        )
    sent = normalise_fingerprint(request.headers.get(header, ""))
    if sent is None or not hmac.compare_digest(sent, expected):
        raise WijkbrugError(
            ErrorCode.UNAUTHORIZED, "this token needs its client certificate, and it was not sent"
        )


class ClientLimiter:
    """Per-client request limits (moving windows, the ``limits`` library, in this
    process's memory: with several bridge processes each enforces its own share)."""

    def __init__(self, spec: str) -> None:
        self._items = parse_many(spec)
        self._windows = MovingWindowRateLimiter(MemoryStorage())

    def check(self, client: ClientRef) -> None:
        key = str(client.id)
        for item in self._items:
            if not self._windows.hit(item, "client", key):
                stats = self._windows.get_window_stats(item, "client", key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise WijkbrugError(
                    ErrorCode.THROTTLED,
                    f"too many requests from this client (limit {item}); try again in {wait} s",
                    details={"retry_after": wait},
                )


CurrentClient = Annotated[ClientRef, Depends(current_client)]


def access_of(client: ClientRef, request: Request) -> Access:
    """The audit context of an integration client's request."""
    origin = request.client.host if request.client else None
    return Access(f"client:{client.id} {client.name}", client.org.code, origin)


def homeserver_denied(request: Request, bridge: Bridge) -> JSONResponse | None:
    """None if the request carries the hs_token (``Authorization: Bearer`` only, compared
    in constant time); else the Matrix-style 401/403 to answer with."""
    token = bearer_token(request)
    if token is None:
        return JSONResponse({"errcode": "M_UNAUTHORIZED", "error": "missing hs_token"}, 401)
    expected = bridge.settings.secret("hs_token")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return JSONResponse({"errcode": "M_FORBIDDEN", "error": "wrong hs_token"}, 403)
    return None
