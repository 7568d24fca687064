"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from bridge import observability
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
    stats = await asyncio.to_thread(bridge.store.queue_stats)
    for key, help_text in QUEUE_METRICS.items():
        Gauge(f"wijkbrug_{key}", help_text, registry=registry).set(stats[key])
    own = generate_latest(registry) + generate_latest(observability.REGISTRY)
    return Response(own, media_type=CONTENT_TYPE_LATEST)


QUEUE_METRICS = {
    "outbox_oldest_age_seconds": "Age of the oldest message still waiting for the homeserver",
    "outbox_failed": "Messages given up on (not delivered to a case room)",
    "push_depth": "Replies and status updates waiting to be pushed to practice systems",
    "push_failed": "Pushes to practice systems given up on",
    "inbound_depth": "Homeserver events waiting to be handled (e.g. for a megolm key)",
    "undecryptable": "Nurses' messages the bridge could not decrypt (the room was told)",
    "escalations": "Urgent messages offered to the next provider",
}
