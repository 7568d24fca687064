"""The FHIR facades: R4 (wire version 4.0.1) at ``/fhir`` and STU3 (3.0.2) at
``/fhir/stu3``, each with ``metadata`` and ``Communication`` (create, read, search).

One builder makes both: they differ in the dialect that parses what is posted, and in how
the stored (canonical R4) resource is written out. A client's token is bound to one
dialect and posts only at its own endpoint. Every error is an ``OperationOutcome``. A
token sees only its own organisation's communications: those its practice sent and the
replies to them (or, for a provider's client, those addressed to the provider).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from adapters import fhir_r4, fhir_stu3
from bridge import conformance, fhirmodel, files
from bridge.canonical import Identifier
from bridge.directory import ClientRef
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import normalise_system
from bridge.service import Bridge
from bridge.store import StoredCommunication
from bridge.web.deps import BridgeDep, CurrentClient, access_of, message_body_limit, read_body
from bridge.web.fhirutil import page_params, search_bundle

FHIR_JSON = "application/fhir+json"
_SEARCH_PARAMS = {"_lastUpdated", "_count", "_offset", "identifier", "status", "_format"}
_DATE_PREFIX = re.compile(r"^(gt|ge|lt|le|eq)?(\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?)$")


def fhir_response(resource: dict[str, Any], status: int = 200, **headers: str) -> Response:
    """A FHIR JSON response (turned into XML on the way out when the client asks for XML;
    see ``fhir_format`` in bridge.web.app)."""
    return Response(
        json.dumps(resource, ensure_ascii=False),
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


def _parse_instant(value: str, where: str) -> tuple[str, datetime]:
    match = _DATE_PREFIX.match(value)
    if not match:
        raise WijkbrugError(
            ErrorCode.VALUE,
            "_lastUpdated must be [gt|ge|lt|le]YYYY-MM-DD or a dateTime with a time zone",
            [Issue(ErrorCode.VALUE, "not a FHIR date or dateTime with time zone", where)],
        )
    prefix = match.group(1) or "ge"
    text = match.group(2).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WijkbrugError(
            ErrorCode.VALUE,
            "_lastUpdated is not a valid moment",
            [Issue(ErrorCode.VALUE, "not a valid date", where)],
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return prefix, moment


@dataclass(frozen=True)
class Flavour:
    """What differs between the FHIR versions Wijkbrug speaks."""

    prefix: str  # "/fhir" or "/fhir/stu3"
    dialect: str  # the client dialect that may post here
    write: Callable[[dict[str, Any]], dict[str, Any]]  # stored R4 -> wire resource
    capability: Callable[[str], dict[str, Any]]  # base URL -> CapabilityStatement


async def _posted(
    request: Request, client: ClientRef, bridge: Bridge, dialect: str, refusal: str
) -> tuple[bytes, str]:
    """The posted body (within the message size limit) and its content type, from a
    client of ``dialect``; any other client is refused, told ``refusal``."""
    content_type = request.headers.get("content-type", FHIR_JSON)
    body = await read_body(request, message_body_limit(bridge))
    if client.dialect != dialect:
        raise WijkbrugError(
            ErrorCode.INVALID, f"this token's client speaks {client.dialect}; {refusal}"
        )
    return body, content_type


async def _accept(
    request: Request, client: ClientRef, bridge: Bridge, body: bytes, content_type: str
) -> tuple[StoredCommunication, bool]:
    """Accept one posted message (see ``Bridge.accept``); delivery starts at once."""
    ((stored, created),) = await asyncio.to_thread(
        bridge.accept, client, body, content_type, access_of(client, request)
    )
    if created:
        bridge.wake()
    return stored, created


def communication_router(flavour: Flavour) -> APIRouter:
    """The ``metadata`` and ``Communication`` endpoints of one FHIR version."""
    router = APIRouter(prefix=flavour.prefix)
    write = flavour.write

    def entry(base: str, stored: StoredCommunication) -> dict[str, Any]:
        return {
            "fullUrl": f"{base}/{stored.id}",
            "resource": write(stored.resource),
            "search": {"mode": "match"},
        }

    @router.get("/metadata")
    async def metadata(bridge: BridgeDep) -> Response:
        """The CapabilityStatement of this server."""
        return fhir_response(flavour.capability(bridge.settings.public_url + flavour.prefix))

    @router.post("/Communication")
    async def create_communication(
        request: Request, client: CurrentClient, bridge: BridgeDep
    ) -> Response:
        """Accept a GP's message about a patient: 201 once stored, 200 for a known identifier."""
        body, content_type = await _posted(
            request,
            client,
            bridge,
            flavour.dialect,
            f"post {flavour.dialect} messages only (this endpoint is {flavour.prefix})",
        )
        stored, created = await _accept(request, client, bridge, body, content_type)
        version = str(stored.resource.get("meta", {}).get("versionId", "1"))
        location = (
            f"{bridge.settings.public_url}{flavour.prefix}/Communication/{stored.id}"
            f"/_history/{version}"
        )
        return fhir_response(
            write(stored.resource),
            201 if created else 200,
            Location=location,
            ETag=f'W/"{version}"',
        )

    @router.get("/Communication/{comm_id}")
    async def read_communication(
        comm_id: str, request: Request, client: CurrentClient, bridge: BridgeDep
    ) -> Response:
        """One communication of the token's organisation."""
        stored = await asyncio.to_thread(
            bridge.store.get_communication, comm_id, client.org, access_of(client, request)
        )
        if stored is None:
            raise WijkbrugError(ErrorCode.NOT_FOUND, f"Communication/{comm_id} is not known")
        version = str(stored.resource.get("meta", {}).get("versionId", "1"))
        return fhir_response(write(stored.resource), ETag=f'W/"{version}"')

    @router.get("/Binary/{file_id}")
    async def read_binary(
        file_id: str, request: Request, client: CurrentClient, bridge: BridgeDep
    ) -> Response:
        """A file of a message of the token's organisation: its bytes, or a FHIR
        ``Binary`` when asked for FHIR (``Accept``/``_format``)."""
        found = await asyncio.to_thread(
            bridge.store.read_file, file_id, client.org, access_of(client, request)
        )
        if found is None:
            raise WijkbrugError(ErrorCode.NOT_FOUND, "Binary is not known")
        wanted = (request.query_params.get("_format") or request.headers.get("accept", "")).lower()
        if "fhir" in wanted or wanted in ("json", "xml"):
            binary = {
                "resourceType": "Binary",
                "id": found.id,
                "contentType": found.content_type,
                "data": files.b64(found.data),
            }
            return fhir_response(binary)
        return Response(
            found.data,
            media_type=found.content_type,
            headers={
                "Content-Disposition": "attachment",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @router.get("/Communication")
    async def search_communications(
        request: Request, client: CurrentClient, bridge: BridgeDep
    ) -> Response:
        """Search the token's communications (``_lastUpdated``, ``identifier``, ``status``)."""
        params = request.query_params
        unknown = sorted(set(params.keys()) - _SEARCH_PARAMS)
        if unknown:
            raise WijkbrugError(
                ErrorCode.NOT_SUPPORTED,
                f"unsupported search parameter(s): {', '.join(unknown)}",
                [
                    Issue(ErrorCode.NOT_SUPPORTED, "unsupported search parameter", p)
                    for p in unknown
                ],
            )
        count, offset = page_params(params)
        after: datetime | None = None
        before: datetime | None = None
        inclusive = False
        for value in params.getlist("_lastUpdated"):
            prefix, moment = _parse_instant(value, "_lastUpdated")
            if prefix in ("gt", "ge", "eq"):
                after, inclusive = moment, prefix != "gt"
            else:
                before = moment
        identifier: Identifier | None = None
        identifier_value: str | None = None
        if raw := params.get("identifier"):
            system, sep, value = raw.partition("|")
            if sep:
                identifier = Identifier(normalise_system(system), value)
            else:
                identifier_value = raw
        page, total = await asyncio.to_thread(
            bridge.store.search_communications,
            client.org,
            updated_after=after,
            updated_before=before,
            inclusive_after=inclusive,
            identifier=identifier,
            identifier_value=identifier_value,
            status=params.get("status"),
            count=count,
            offset=offset,
            access=access_of(client, request),
        )
        base = f"{bridge.settings.public_url}{flavour.prefix}/Communication"
        entries = [entry(base, c) for c in page]
        return fhir_response(search_bundle(base, params, offset, total, entries))

    return router


R4 = Flavour(
    "/fhir",
    fhir_r4.NAME,
    lambda resource: resource,
    conformance.capability_statement,
)
STU3 = Flavour(
    "/fhir/stu3",
    fhir_stu3.NAME,
    fhir_stu3.from_r4,
    conformance.capability_statement_stu3,
)
router = communication_router(R4)
stu3_router = communication_router(STU3)


@router.post("/$process-message")
async def process_message(request: Request, client: CurrentClient, bridge: BridgeDep) -> Response:
    """FHIR messaging (``$process-message``, synchronous): a ``message`` Bundle whose
    MessageHeader focuses the Communication; the answer is a ``message`` Bundle with a
    MessageHeader whose ``response`` names the request's header, and the Communication as
    stored. A re-sent message (same Communication identifier) gets the same answer."""
    body, content_type = await _posted(
        request, client, bridge, fhir_r4.NAME, "$process-message takes FHIR R4"
    )
    request_header = _message_header_id(body, content_type)
    stored, _ = await _accept(request, client, bridge, body, content_type)
    base = bridge.settings.public_url + "/fhir"
    header_id = str(uuid.uuid4())
    answer = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{header_id}",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": header_id,
                    "eventCoding": {
                        "system": "https://wijkbrug.nl/fhir/CodeSystem/message-event",
                        "code": "case-message",
                    },
                    "source": {"endpoint": base},
                    "response": {"identifier": request_header, "code": "ok"},
                    "focus": [{"reference": f"Communication/{stored.id}"}],
                },
            },
            {"fullUrl": f"{base}/Communication/{stored.id}", "resource": stored.resource},
        ],
    }
    return fhir_response(answer, 200)


@router.post("")
@router.post("/", include_in_schema=False)
async def transaction(request: Request, client: CurrentClient, bridge: BridgeDep) -> Response:
    """FHIR ``transaction`` and ``batch`` at the base (``POST [base]``): a Bundle carrying
    the Communication with its Patient and sender, as taken at ``/Communication`` too. The
    answer is a ``transaction-response`` (``batch-response``) with one entry per request
    entry, in order: the Communication's ``201 Created`` (``200 OK`` for an identifier
    posted before) with its location, and for each other entry ``200 OK`` with an
    informational outcome: it was read as the Communication's context, not kept apart."""
    body, content_type = await _posted(
        request,
        client,
        bridge,
        fhir_r4.NAME,
        "POST [base] takes FHIR R4 Bundles (an STU3 system posts its Communication to "
        "/fhir/stu3/Communication)",
    )
    kind, entries = _transaction_entries(body, content_type)
    stored, created = await _accept(request, client, bridge, body, content_type)
    base = bridge.settings.public_url + "/fhir"
    version = str(stored.resource.get("meta", {}).get("versionId", "1"))
    last_modified = str(stored.resource.get("meta", {}).get("lastUpdated", ""))
    responses: list[dict[str, Any]] = []
    for resource_type in entries:
        if resource_type == "Communication":
            answer: dict[str, Any] = {
                "status": "201 Created" if created else "200 OK",
                "location": f"Communication/{stored.id}/_history/{version}",
                "etag": f'W/"{version}"',
            }
            if last_modified:
                answer["lastModified"] = last_modified
            responses.append(
                {
                    "fullUrl": f"{base}/Communication/{stored.id}",
                    "resource": stored.resource,
                    "response": answer,
                }
            )
        else:
            responses.append(
                {
                    "response": {
                        "status": "200 OK",
                        "outcome": {
                            "resourceType": "OperationOutcome",
                            "issue": [
                                {
                                    "severity": "information",
                                    "code": "informational",
                                    "diagnostics": f"this {resource_type} was read as part of "
                                    f"Communication/{stored.id} (contained there); Wijkbrug "
                                    "keeps no resource of its own for it",
                                }
                            ],
                        },
                    }
                }
            )
    answer_bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": f"{kind}-response",
        "entry": responses,
    }
    return fhir_response(answer_bundle, 200)


def _load(body: bytes, content_type: str) -> dict[str, Any]:
    """The posted JSON or XML as FHIR JSON, for a look at a Bundle's shape before the
    dialect parses it in full (its XML issues are the dialect's to report)."""
    if fhir_r4.media_format(content_type) == "xml":
        loaded, _ = fhirmodel.load_xml(body)
        return loaded
    return fhirmodel.load_json(body)


def _transaction_entries(body: bytes, content_type: str) -> tuple[str, list[str]]:
    """The Bundle's type (``transaction`` or ``batch``) and the resource type of each of
    its entries; anything else is refused here, before the Communication's own checks."""
    bundle = _load(body, content_type)
    kind = bundle.get("type")
    if bundle.get("resourceType") != "Bundle" or kind not in ("transaction", "batch"):
        raise WijkbrugError(
            ErrorCode.INVALID,
            "POST [base] takes a Bundle of type transaction or batch (a single Communication "
            "goes to /fhir/Communication, a message Bundle to /fhir/$process-message)",
            [
                Issue(
                    ErrorCode.INVALID,
                    "expected a transaction or batch Bundle",
                    "Bundle.type" if bundle.get("resourceType") == "Bundle" else "resourceType",
                )
            ],
        )
    entries = bundle.get("entry")
    types = []
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        found = resource.get("resourceType") if isinstance(resource, dict) else None
        types.append(found if isinstance(found, str) else "entry")
    return str(kind), types


def _message_header_id(body: bytes, content_type: str) -> str:
    """The id of the request's MessageHeader (the first entry of a message Bundle);
    anything else is refused here, before the Communication's own checks."""
    bundle = _load(body, content_type)
    entries = bundle.get("entry") if bundle.get("resourceType") == "Bundle" else None
    entry = entries[0] if isinstance(entries, list) and entries else None
    first = entry.get("resource") if isinstance(entry, dict) else None
    if bundle.get("type") != "message" or not isinstance(first, dict):
        raise WijkbrugError(
            ErrorCode.INVALID,
            "$process-message takes a Bundle of type message, its MessageHeader first",
            [Issue(ErrorCode.INVALID, "expected a message Bundle", "Bundle.type")],
        )
    header = None
    if first.get("resourceType") == "MessageHeader":
        # Its id, or the id in its fullUrl (urn:uuid:..., or .../MessageHeader/id).
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        tail = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1] if isinstance(full_url, str) else None
        header = first.get("id") or tail
    if not isinstance(header, str) or not header:
        raise WijkbrugError(
            ErrorCode.REQUIRED,
            "the message's first entry is its MessageHeader, with an id or fullUrl",
            [Issue(ErrorCode.REQUIRED, "MessageHeader with an id", "Bundle.entry[0].resource")],
        )
    return header
