"""What operators see: request ids in every log line, JSON logs on request, and the
process's own Prometheus metrics (requests per dialect, delivery latency).

    request --X-Request-ID (kept if sane, else new)--> contextvar --> every log record
    /metrics = queue gauges from the database (bridge.web.health) + this process's metrics

Log lines carry ids only (case numbers, communication ids, request ids): never message
text, patient data or tokens.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str] = ContextVar("wijkbrug_request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "wijkbrug_http_requests",
    "HTTP requests answered, by dialect or surface and status class",
    ["surface", "status"],
    registry=REGISTRY,
)
DELIVERY = Histogram(
    "wijkbrug_delivery_seconds",
    "From a practice's message accepted to its event in the case room",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)


def request_id(sent: str | None) -> str:
    """The id of a request: the caller's ``X-Request-ID`` if it is a sane token (so a
    practice system can trace its own calls), else a new one."""
    return sent if sent and _SANE_ID.match(sent) else uuid.uuid4().hex


def surface(path: str) -> str:
    """Which face of the bridge a path belongs to, for the request counts."""
    for prefix, name in (
        ("/fhir/stu3", "fhir-stu3"),
        ("/fhir", "fhir-r4"),
        ("/edifact", "edifact-medvri"),
        ("/_matrix", "appservice"),
        ("/_wijkbrug", "policy"),
        ("/admin", "admin"),
    ):
        if path.startswith(prefix):
            return name
    return "other"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(*, verbose: bool, json_lines: bool) -> None:
    """Text lines (``time level logger [request]: message``) or JSON lines, each with the
    request id of the request it belongs to (``-`` outside requests)."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # nio logs event and session details at INFO and below; we log ids ourselves.
    for noisy in ("nio", "peewee", "httpx", "alembic.runtime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
