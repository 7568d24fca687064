"""The application-service API the homeserver calls (``/_matrix/app/v1``).

A transaction is stored before we answer 200, and a transaction id we have seen is
acknowledged without being processed again. The hs_token is compared in constant time
and only accepted from the ``Authorization: Bearer`` header (not the deprecated query).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bridge.web.deps import BridgeDep, homeserver_denied

router = APIRouter(prefix="/_matrix/app/v1")


def _matrix_error(status: int, errcode: str, error: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "error": error}, status_code=status)


@router.put("/transactions/{txn_id}")
async def transaction(txn_id: str, request: Request, bridge: BridgeDep) -> JSONResponse:
    """Receive events from the homeserver; 200 only once they are stored."""
    if denied := homeserver_denied(request, bridge):
        return denied
    try:
        body: Any = json.loads(await request.body())
    except ValueError:
        return _matrix_error(400, "M_NOT_JSON", "body is not JSON")
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return _matrix_error(400, "M_BAD_JSON", "events must be a list of objects")
    ephemeral = body.get("ephemeral", body.get("de.sorunome.msc2409.ephemeral", []))
    if not isinstance(ephemeral, list):
        return _matrix_error(400, "M_BAD_JSON", "ephemeral must be a list of objects")
    ephemeral = [e for e in ephemeral if isinstance(e, dict)]
    await asyncio.to_thread(bridge.on_transaction, txn_id, events, ephemeral)
    bridge.wake()
    return JSONResponse({})


@router.get("/users/{user_id}")
async def query_user(user_id: str, request: Request, bridge: BridgeDep) -> JSONResponse:
    """Ghosts exist only once a practice system sent as them; we create none on demand."""
    if denied := homeserver_denied(request, bridge):
        return denied
    return _matrix_error(404, "M_NOT_FOUND", "no such ghost")


@router.get("/rooms/{alias}")
async def query_alias(alias: str, request: Request, bridge: BridgeDep) -> JSONResponse:
    """Case rooms have no aliases."""
    if denied := homeserver_denied(request, bridge):
        return denied
    return _matrix_error(404, "M_NOT_FOUND", "no such room alias")


@router.post("/ping")
async def ping(request: Request, bridge: BridgeDep) -> JSONResponse:
    """The homeserver checks that it can reach us."""
    if denied := homeserver_denied(request, bridge):
        return denied
    return JSONResponse({})
