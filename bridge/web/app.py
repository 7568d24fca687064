"""``create_app(settings)`` builds the bridge's HTTP application; nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from bridge import __version__
from bridge.config import Settings
from bridge.errors import ErrorCode, Issue, WijkbrugError, operation_outcome
from bridge.runtime import open_store
from bridge.service import Bridge
from bridge.web import admin_api, admin_page, appservice, directory_fhir, edifact, fhir, health
from bridge.web import policy as policy_api
from bridge.web.deps import ClientLimiter
from bridge.web.edge import Edge

log = logging.getLogger(__name__)


def _error_response(request: Request, error: WijkbrugError) -> Response:
    headers = {}
    if isinstance(retry := error.details.get("retry_after"), int):
        headers["Retry-After"] = str(retry)
    if request.url.path.startswith("/fhir"):
        return fhir.fhir_response(operation_outcome(error), error.status, **headers)
    body = {"error": error.code.value, "message": error.message}
    return JSONResponse(body, status_code=error.status, headers=headers)


def create_app(settings: Settings, *, run_bridge: bool = True) -> FastAPI:
    """The bridge app; with ``run_bridge=False`` the Matrix workers do not start (unit tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        bridge = Bridge(settings, store)
        app.state.bridge = bridge
        if run_bridge:
            await bridge.start()
        try:
            yield
        finally:
            await bridge.stop()
            store.engine.dispose()

    app = FastAPI(
        title="Wijkbrug",
        version=__version__,
        summary="Routes GP messages to the preferred home-care provider over encrypted Matrix",
        lifespan=lifespan,
    )
    spec = settings.http.client_rate_limit
    app.state.limiter = ClientLimiter(spec) if spec else None
    app.include_router(fhir.stu3_router)  # before /fhir, so /fhir/stu3 is not a type
    app.include_router(fhir.router)
    app.include_router(edifact.router)
    app.include_router(directory_fhir.router)
    app.include_router(appservice.router)
    app.include_router(policy_api.router)
    app.include_router(health.router)
    app.include_router(admin_api.router)
    app.include_router(admin_page.router)

    app.add_middleware(Edge, refuse=_error_response)

    @app.exception_handler(WijkbrugError)
    async def _wijkbrug_error(request: Request, exc: WijkbrugError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue(ErrorCode.INVALID, str(e.get("msg", "invalid")), ".".join(map(str, e["loc"])))
            for e in exc.errors()
        ]
        return _error_response(request, WijkbrugError.from_issues(issues))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.NOT_SUPPORTED,
            401: ErrorCode.UNAUTHORIZED,
        }.get(exc.status_code, ErrorCode.INVALID)
        error = WijkbrugError(code, str(exc.detail))
        response = _error_response(request, error)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> Response:
        # The database refused a value from the request (e.g. a NUL in a JSON string):
        # nothing was stored (the transaction rolled back); the client can fix it.
        log.info("a value the database cannot store on %s %s", request.method, request.url.path)
        error = WijkbrugError(
            ErrorCode.VALUE,
            "a value cannot be stored as it is (for example a NUL character); nothing was stored",
        )
        return _error_response(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Log the type and where, never the request body (it may hold patient data).
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        error = WijkbrugError(ErrorCode.UNAVAILABLE, "internal error; nothing was stored")
        response = _error_response(request, error)
        response.status_code = 500
        return response

    return app
