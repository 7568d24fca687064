"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from bridge.web.deps import BridgeDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(bridge: BridgeDep) -> JSONResponse:
    """Ready: database reachable, homeserver reached and our appservice registration known."""
    try:
        await asyncio.to_thread(bridge.store.outbox_depth)
    except Exception:
        return JSONResponse({"status": "unavailable", "reason": "database"}, status_code=503)
    if not await bridge.check_ready():
        return JSONResponse(
            {"status": "unavailable", "reason": bridge.last_error or "homeserver not reached"},
            status_code=503,
        )
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def metrics(bridge: BridgeDep) -> Response:
    """Prometheus metrics."""
    registry = CollectorRegistry()
    depth = Gauge("wijkbrug_outbox_depth", "Messages waiting for the homeserver", registry=registry)
    depth.set(await asyncio.to_thread(bridge.store.outbox_depth))
    ready = Gauge("wijkbrug_ready", "1 when connected to the homeserver", registry=registry)
    ready.set(1 if bridge.ready else 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
