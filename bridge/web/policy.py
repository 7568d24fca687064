"""Who may enter a case room, asked by the homeserver's Wijkbrug module.

::

    Synapse + bridge.synapse_policy --GET /_wijkbrug/policy/v1/users/{user_id}-->  here
        Authorization: Bearer <hs_token>        <-- {"allowed": true | false}

A user is allowed when the directory knows the Matrix ID: a member of a provider's team or
a practitioner (practice, huisartsenpost). The bridge's own users (bot, ghosts) are decided
by the module itself. The hs_token is compared in constant time and only accepted from the
``Authorization`` header, as on the appservice API.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bridge.web.deps import BridgeDep, homeserver_denied

router = APIRouter(prefix="/_wijkbrug/policy/v1")


# ``:path``: a Matrix localpart may contain "/", which arrives decoded.
@router.get("/users/{user_id:path}")
async def user_allowed(user_id: str, request: Request, bridge: BridgeDep) -> JSONResponse:
    """Whether a Matrix user may enter case rooms (a registered care worker)."""
    if denied := homeserver_denied(request, bridge):
        return denied
    allowed = await asyncio.to_thread(bridge.store.is_registered_user, user_id)
    return JSONResponse({"allowed": allowed})
