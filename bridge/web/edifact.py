"""``POST /edifact``: EDIFACT interchanges (MEDVRI letters) from practice systems.

The answer is JSON: one row per message of the interchange (its identifier, the stored
Communication and whether it is new). A bad interchange gets a 4xx naming the segment
(tag and index), element and component; nothing of it is stored. Replies go back to an
EDIFACT practice as MEDVRI interchanges on its push endpoint.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adapters import edifact_medvri
from bridge.errors import ErrorCode, WijkbrugError
from bridge.web.deps import BridgeDep, CurrentClient, access_of, message_body_limit, read_body

router = APIRouter()


@router.post("/edifact")
async def post_interchange(
    request: Request, client: CurrentClient, bridge: BridgeDep
) -> JSONResponse:
    """Accept an interchange: 201 once every message in it is stored."""
    try:
        if client.dialect != edifact_medvri.NAME:
            raise WijkbrugError(
                ErrorCode.INVALID,
                f"this token's client speaks {client.dialect}; /edifact takes "
                f"{edifact_medvri.NAME} interchanges",
            )
        body = await read_body(request, message_body_limit(bridge))
        content_type = request.headers.get("content-type", edifact_medvri.EDIFACT)
        results = await asyncio.to_thread(
            bridge.accept, client, body, content_type, access_of(client, request)
        )
    except WijkbrugError as error:
        return JSONResponse(edifact_medvri.error_response(error), status_code=error.status)
    if any(created for _, created in results):
        bridge.wake()
    base = f"{bridge.settings.public_url}/fhir/Communication"
    rows = [
        {
            "identifier": next(
                (i.get("value") for i in stored.resource.get("identifier", [])), None
            ),
            "communication": f"{base}/{stored.id}",
            "status": "created" if created else "existing",
        }
        for stored, created in results
    ]
    status = 201 if any(created for _, created in results) else 200
    return JSONResponse({"messages": rows}, status_code=status)
