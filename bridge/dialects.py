"""Which dialect speaks how: parsing input and rendering replies for each practice system.

    fhir-r4         POST /fhir/Communication          replies: GET /fhir/..., or pushed
    fhir-stu3       POST /fhir/stu3/Communication     replies: GET /fhir/stu3/..., or pushed
    edifact-medvri  POST /edifact                     replies: pushed as MEDVRI interchanges

The stored, canonical resource is FHIR R4; other dialects are rendered from it (or from
the canonical :class:`~bridge.canonical.Reply`) on the way out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from adapters import edifact_medvri, fhir_r4, fhir_stu3
from bridge.canonical import CaseMessage, Reply
from bridge.directory import OrgRef
from bridge.identifiers import MESSAGE_SYSTEM


def parse(dialect: str, body: bytes, content_type: str) -> list[CaseMessage]:
    """The canonical messages in what a client of ``dialect`` posted."""
    if dialect == fhir_stu3.NAME:
        return [fhir_stu3.parse_communication(body, content_type)]
    if dialect == edifact_medvri.NAME:
        return edifact_medvri.parse_interchange(body, content_type)
    return [fhir_r4.parse_communication(body, content_type)]


@dataclass(frozen=True)
class Outgoing:
    """A rendered push, ready to send to a client's endpoint."""

    path: str  # appended to the client's push URL
    body: bytes
    content_type: str
    headers: dict[str, str]
    method: str = "POST"


def pushes_status(dialect: str) -> bool:
    """Whether a client of ``dialect`` is told when its own messages change status
    (delivered, read, not deliverable). FHIR can say so; a MEDVRI letter cannot."""
    return dialect in (fhir_r4.NAME, fhir_stu3.NAME)


def render_status(dialect: str, resource: dict[str, Any], identifier: tuple[str, str]) -> Outgoing:
    """A practice's own message as it is now, as a conditional update on the practice's
    own identifier (``PUT /Communication?identifier=system|value``): the practice system
    finds its message by the identifier it gave it, and a repeated push changes nothing."""
    wire = fhir_stu3.from_r4(resource) if dialect == fhir_stu3.NAME else resource
    query = urlencode({"identifier": f"{identifier[0]}|{identifier[1]}"})
    body = json.dumps(wire, ensure_ascii=False).encode()
    return Outgoing(f"/Communication?{query}", body, "application/fhir+json", {}, "PUT")


def render_push(
    dialect: str, reply: Reply, practice: OrgRef, now: datetime, *, files_base: str = ""
) -> Outgoing:
    """A reply in the client's own dialect. FHIR pushes are conditional creates on the
    reply's identifier (``If-None-Exist``), so a retried push never makes a duplicate."""
    if_none_exist = {"If-None-Exist": f"identifier={MESSAGE_SYSTEM}|{reply.id}"}
    if dialect == fhir_stu3.NAME:
        resource: dict[str, Any] = fhir_stu3.render_reply(
            reply, last_updated=now, files_base=files_base
        )
        body = json.dumps(resource, ensure_ascii=False).encode()
        return Outgoing("/Communication", body, "application/fhir+json", if_none_exist)
    if dialect == edifact_medvri.NAME:
        interchange = edifact_medvri.render_reply(
            reply,
            sender_id=practice.agb or practice.code,
            recipient_agb=practice.agb or practice.code,
            control_ref=reply.id.replace("-", "")[:14].upper(),
            now=now,
            recipient_name=practice.name,
            files_base=files_base,
        )
        return Outgoing("", interchange, "application/edifact", {})
    resource = fhir_r4.render_reply(reply, last_updated=now, files_base=files_base)
    body = json.dumps(resource, ensure_ascii=False).encode()
    return Outgoing("/Communication", body, "application/fhir+json", if_none_exist)
