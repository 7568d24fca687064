"""What every HTTP request passes on its way in and out, as one pure ASGI layer:

    request --> request id (the caller's sane X-Request-ID, or a new one) --> contextvar
            --> a NUL in the URL: 400 here, before any database sees it --> the app
    answer  <-- X-Request-ID, counted by surface and status class
            <-- FHIR JSON written as FHIR XML for a client that asked for XML

One layer rather than three ``@app.middleware("http")`` functions: Starlette runs each of
those as a task with a memory stream between it and the app, and every practice system's
post passes here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from types import ModuleType
from urllib.parse import unquote_plus

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters import fhir_r4, fhir_stu3
from bridge.errors import ErrorCode, WijkbrugError
from bridge.observability import REQUEST_ID, REQUESTS, request_id, surface

log = logging.getLogger(__name__)

FHIR_JSON = fhir_r4.FHIR_JSON.encode()


class Edge:
    """The bridge's outermost own layer (see the module docstring). ``refuse(request,
    error)`` answers an error the way the app's handlers do."""

    def __init__(self, app: ASGIApp, refuse: Callable[[Request, WijkbrugError], Response]) -> None:
        self.app = app
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = request_id(headers.get("x-request-id"))
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        status = 0

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"x-request-id", rid.encode())],
                }
            await send(message)

        out: Send = answer
        if path.startswith("/fhir"):
            wanted = fhir_r4.response_media_type(
                headers.get("accept"), QueryParams(query).get("_format")
            )
            if wanted == fhir_r4.FHIR_XML:
                out = _AsXml(answer, fhir_stu3 if path.startswith("/fhir/stu3") else fhir_r4, path)
        token = REQUEST_ID.set(rid)
        try:
            if "\x00" in path or "\x00" in unquote_plus(query):
                # No database stores it (PostgreSQL text cannot), and no identifier of
                # ours has one.
                error = WijkbrugError(ErrorCode.INVALID, "a NUL character is not allowed in a URL")
                await self.refuse(Request(scope), error)(scope, receive, out)
            else:
                await self.app(scope, receive, out)
        finally:
            REQUEST_ID.reset(token)
        if status:
            REQUESTS.labels(surface(path), f"{status // 100}xx").inc()


class _AsXml:
    """A FHIR JSON answer (errors included: every FHIR answer is built as JSON) sent as
    FHIR XML instead; any other answer passes unchanged."""

    def __init__(self, send: Send, version: ModuleType, path: str) -> None:
        self.send = send
        self.version = version
        self.path = path
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = Headers(raw=list(message.get("headers", ()))).get("content-type", "")
            if content_type.encode().startswith(FHIR_JSON):
                self.start = message  # held until the whole body is here
                return
        elif message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._send_converted(self.start, b"".join(self.chunks))
            return
        await self.send(message)

    async def _send_converted(self, start: Message, body: bytes) -> None:
        try:
            converted, media_type = self.version.to_xml(json.loads(body)), fhir_r4.FHIR_XML
        except ValueError:
            # Something XML 1.0 cannot hold (a control character): the JSON it is, rather
            # than nothing. Errors never get here (their text is made printable).
            log.warning("a %s answer could not be written as XML; sent as JSON", self.path)
            converted, media_type = body, fhir_r4.FHIR_JSON
        headers = [
            (k, v)
            for k, v in start.get("headers", ())
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(converted)).encode()),
        ]
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": converted})
