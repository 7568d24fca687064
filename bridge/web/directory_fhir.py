"""The region's directory as read-only FHIR R4: who is who, and where to reach them on Matrix.

    store: list_orgs / list_teams / list_practitioners / wijken
        |
        v  pure mapping (this module, no I/O)
    Organization        org-<id>       practice (AGB), provider (URA/AGB), huisartsenpost
    HealthcareService   team-<id>      a provider's team: care types, PC4 coverage, members
    PractitionerRole    role-<id>      a practitioner (contained, AGB/UZI/BIG) at her org
    Endpoint            endpoint-<..>  one Matrix ID: address matrix:u/<user>:<server>
        |
        v
    GET /fhir/<Type>/<id>                              read (404 OperationOutcome)
    GET /fhir/<Type>?identifier=&name=&_count=...      search-type (Bundle searchset)

The directory holds no patient data, so any valid integration token may read all of it
(unlike a Communication, which only its own organisation sees). The whole directory of a
region is small (hundreds of rows): each request maps it from the store and filters in
memory, so search semantics are exactly those of the resources returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from starlette.datastructures import QueryParams

from bridge.canonical import CARE_TYPE_SYSTEM, CareType
from bridge.directory import Directory, OrgRef, PractitionerRef, TeamRef
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import (
    AGB_SYSTEM,
    BIG_SYSTEM,
    MATRIX_SYSTEM,
    URA_SYSTEM,
    UZI_SYSTEM,
    normalise_system,
)
from bridge.web.deps import BridgeDep, CurrentClient
from bridge.web.fhir import fhir_response
from bridge.web.fhirutil import page_params, search_bundle

router = APIRouter(prefix="/fhir")

Resource = dict[str, Any]

ENDPOINT_CONNECTION_TYPE_SYSTEM = "https://wijkbrug.nl/fhir/CodeSystem/endpoint-connection-type"
PC4_RANGE_EXTENSION = "https://wijkbrug.nl/fhir/StructureDefinition/pc4-range"
# RoleCodeNL (urn:oid:2.16.840.1.113883.2.4.15.1060), the organisation types of nl-core.
ORGANIZATION_TYPE_SYSTEM = "http://nictiz.nl/fhir/NamingSystem/organization-type"
LOCATION_PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"

_ORGANIZATION_TYPES = {
    "practice": ("Z3", "Huisartspraktijk (zelfstandig of groepspraktijk)", "Huisartsenpraktijk"),
    "provider": ("T2", "Thuiszorg", "Thuiszorgorganisatie"),
    "hap": ("N6", "Huisartsenpost (t.b.v. dienstwaarneming)", "Huisartsenpost"),
}
_PRACTITIONER_ID = "practitioner"  # local id of the Practitioner inside a PractitionerRole

# A FHIR id is [A-Za-z0-9.-]{1,64}.
_ID_MAX = 64
_ID_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_ENDPOINT_PREFIX = "endpoint-"


# ---------------------------------------------------------------- logical ids and addresses


def organization_id(org: OrgRef) -> str:
    return f"org-{org.id}"


def team_id(team: TeamRef) -> str:
    return f"team-{team.id}"


def role_id(practitioner: PractitionerRef) -> str:
    return f"role-{practitioner.id}"


def endpoint_id(matrix_id: str) -> str:
    """The stable logical id of the Endpoint of a Matrix ID.

    ``@nurse_1:zorg.example`` -> ``endpoint-nurse-5f1--zorg.example``: letters, digits and
    dots stay, ``:`` becomes ``--`` and every other byte ``-xx`` (hex). That code is
    prefix-free, so two Matrix IDs never share an id. Base64url would be shorter but uses
    ``_`` and ``=``, which a FHIR id may not contain. An id that would not fit 63
    characters is ``endpoint-`` + 55 hex digits of SHA-256 instead: exactly 64 characters,
    so it can never equal a readable one.
    """
    if matrix_id.startswith("@"):
        parts = []
        for byte in matrix_id[1:].encode():
            char = chr(byte)
            if char in _ID_LITERAL:
                parts.append(char)
            elif char == ":":
                parts.append("--")
            else:
                parts.append(f"-{byte:02x}")
        readable = _ENDPOINT_PREFIX + "".join(parts)
        if len(readable) < _ID_MAX:
            return readable
    digest = hashlib.sha256(matrix_id.encode()).hexdigest()
    return _ENDPOINT_PREFIX + digest[: _ID_MAX - len(_ENDPOINT_PREFIX)]


def matrix_uri(matrix_id: str) -> str:
    """The ``matrix:`` URI of a user: ``@nurse1:zorg.example`` -> ``matrix:u/nurse1:zorg.example``.

    The Matrix URI scheme (spec appendix, MSC2312) replaces the ``@`` sigil by ``u/``; a
    ``matrix:u/@...`` URI would parse as ``@@...`` in clients. TI-Messenger's FHIR
    directory (gematik, ``Endpoint.address``) uses this same form. The exact Matrix ID is
    also the Endpoint's identifier.
    """
    return "matrix:u/" + quote(matrix_id.removeprefix("@"), safe=":=+")


# ---------------------------------------------------------------- pure mapping


def _reference(resource_type: str, logical_id: str, display: str) -> Resource:
    return {"reference": f"{resource_type}/{logical_id}", "display": display}


def _org_reference(org: OrgRef) -> Resource:
    return _reference("Organization", organization_id(org), org.name)


def _identifiers(pairs: Iterable[tuple[str, str | None]]) -> list[Resource]:
    return [{"system": system, "value": value} for system, value in pairs if value]


def organization_resource(org: OrgRef) -> Resource:
    """An organisation of the region: practice, home-care provider or huisartsenpost."""
    resource: Resource = {
        "resourceType": "Organization",
        "id": organization_id(org),
        "identifier": _identifiers([(URA_SYSTEM, org.ura), (AGB_SYSTEM, org.agb)]),
        "active": True,
    }
    if org.kind in _ORGANIZATION_TYPES:
        code, display, text = _ORGANIZATION_TYPES[org.kind]
        coding = {"system": ORGANIZATION_TYPE_SYSTEM, "code": code, "display": display}
        resource["type"] = [{"coding": [coding], "text": text}]
    resource["name"] = org.name
    return resource


def _care_type_concept(care_type: CareType) -> Resource:
    coding = {"system": CARE_TYPE_SYSTEM, "code": care_type.value, "display": care_type.display}
    return {"coding": [coding]}


def _pc4_text(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _area_location(low: int, high: int, wijken: Mapping[str, Sequence[int]]) -> Resource:
    text = _pc4_text(low, high)
    location: Resource = {
        "resourceType": "Location",
        "id": f"pc4-{low}-{high}",
        "extension": [{"url": PC4_RANGE_EXTENSION, "valueString": text}],
        "status": "active",
        "name": f"PC4 {text}",
    }
    # A wijk that is exactly this range is another name for it; one inside it is part of it.
    exact = sorted(n for n, areas in wijken.items() if list(areas) == list(range(low, high + 1)))
    inside = sorted(
        n for n, areas in wijken.items() if areas and low <= min(areas) <= max(areas) <= high
    )
    if exact:
        location["alias"] = exact
    if inside:
        location["description"] = "Wijken: " + ", ".join(inside)
    location["physicalType"] = {
        "coding": [{"system": LOCATION_PHYSICAL_TYPE_SYSTEM, "code": "area", "display": "Area"}]
    }
    address: Resource = {"country": "NL"}
    if low == high:
        address = {"postalCode": str(low), "country": "NL"}
    location["address"] = address
    return location


def healthcare_service_resource(
    team: TeamRef, wijken: Mapping[str, Sequence[int]] | None = None
) -> Resource:
    """A provider's team: the care types it gives, the areas it covers, its nurses' Endpoints.

    Coverage is ``coverageArea``, one contained ``Location`` (physical type *area*) per PC4
    range, rather than an extension on the service: ``coverageArea`` is where every FHIR
    client looks for a service's area, so a generic viewer shows it and the standard
    ``coverage-area`` search can follow. ``Address.postalCode`` holds one code, so a range
    is the Location's name and, exactly, the ``pc4-range`` extension (``1091-1098``, the
    notation of ``route import``); a single PC4 is also its ``address.postalCode``. The
    wijken that lie wholly inside a range are named in its description (and, when a wijk
    is exactly the range, as its ``alias``).
    """
    ranges = sorted(set(team.pc4_ranges))
    locations = [_area_location(low, high, wijken or {}) for low, high in ranges]
    resource: Resource = {"resourceType": "HealthcareService", "id": team_id(team)}
    if locations:
        resource["contained"] = locations
    # A team that lists no care types serves them all (as routing reads it).
    care_types = team.care_types or tuple(CareType)
    resource.update(
        {
            "active": True,
            "providedBy": _org_reference(team.provider),
            "type": [_care_type_concept(c) for c in care_types],
            "name": team.name,
        }
    )
    if locations:
        resource["coverageArea"] = [
            {"reference": f"#{loc['id']}", "display": loc["name"]} for loc in locations
        ]
    else:
        # No ranges of its own: routing lets the team serve every area of its provider.
        resource["comment"] = f"Covers every area of the agreements of {team.provider.name}."
    if team.members:
        resource["endpoint"] = [
            _reference("Endpoint", endpoint_id(m), m) for m in sorted(team.members)
        ]
    return resource


def practitioner_role_resource(practitioner: PractitionerRef) -> Resource:
    """A practitioner at her organisation; she herself is a contained ``Practitioner``.

    Her AGB, UZI and BIG identify the person, not the role, so (as in nl-core) they are on
    the Practitioner. It is contained because the directory has no Practitioner endpoint
    of its own: one read gives a client everything. Search ``identifier`` and ``name`` on
    PractitionerRole therefore match her contained Practitioner.
    """
    person: Resource = {
        "resourceType": "Practitioner",
        "id": _PRACTITIONER_ID,
        "identifier": _identifiers(
            [
                (AGB_SYSTEM, practitioner.agb),
                (UZI_SYSTEM, practitioner.uzi),
                (BIG_SYSTEM, practitioner.big),
            ]
        ),
        "active": True,
        "name": [{"text": practitioner.name}],
    }
    resource: Resource = {
        "resourceType": "PractitionerRole",
        "id": role_id(practitioner),
        "contained": [person],
        "active": True,
        "practitioner": {"reference": f"#{_PRACTITIONER_ID}", "display": practitioner.name},
        "organization": _org_reference(practitioner.org),
    }
    if practitioner.matrix_id:
        mxid = practitioner.matrix_id
        resource["endpoint"] = [_reference("Endpoint", endpoint_id(mxid), practitioner.name)]
    return resource


@dataclass(frozen=True)
class MatrixAccount:
    """A Matrix ID the directory knows, with who answers there and for which organisation."""

    matrix_id: str
    org: OrgRef
    name: str | None = None


def matrix_accounts(
    teams: Sequence[TeamRef], practitioners: Sequence[PractitionerRef]
) -> list[MatrixAccount]:
    """Every Matrix ID of practitioners and team members, once, ordered by Matrix ID.

    A practitioner's own record wins (it has her name); a nurse in several teams is managed
    by the provider of her first team.
    """
    accounts: dict[str, MatrixAccount] = {}
    for p in practitioners:
        if p.matrix_id:
            accounts.setdefault(p.matrix_id, MatrixAccount(p.matrix_id, p.org, p.name))
    for team in sorted(teams, key=lambda t: t.id):
        for member in team.members:
            accounts.setdefault(member, MatrixAccount(member, team.provider))
    return [accounts[m] for m in sorted(accounts)]


def endpoint_resource(account: MatrixAccount) -> Resource:
    """The Matrix Endpoint of one user (the pattern of TI-Messenger's FHIR directory)."""
    return {
        "resourceType": "Endpoint",
        "id": endpoint_id(account.matrix_id),
        "identifier": [{"system": MATRIX_SYSTEM, "value": account.matrix_id}],
        "status": "active",
        "connectionType": {
            "system": ENDPOINT_CONNECTION_TYPE_SYSTEM,
            "code": "matrix",
            "display": "Matrix",
        },
        "name": account.name or account.matrix_id,
        "managingOrganization": _org_reference(account.org),
        "payloadType": [{"text": "Matrix messages"}],
        "address": matrix_uri(account.matrix_id),
    }


# ---------------------------------------------------------------- the resource types

ResourceType = Literal["Organization", "HealthcareService", "PractitionerRole", "Endpoint"]


def _organizations(store: Directory) -> list[Resource]:
    return [organization_resource(o) for o in store.list_orgs()]


def _healthcare_services(store: Directory) -> list[Resource]:
    wijken = store.wijken()
    return [healthcare_service_resource(t, wijken) for t in store.list_teams()]


def _practitioner_roles(store: Directory) -> list[Resource]:
    return [practitioner_role_resource(p) for p in store.list_practitioners()]


def _endpoints(store: Directory) -> list[Resource]:
    accounts = matrix_accounts(store.list_teams(), store.list_practitioners())
    return [endpoint_resource(a) for a in accounts]


_COLLECT: dict[ResourceType, Callable[[Directory], list[Resource]]] = {
    "Organization": _organizations,
    "HealthcareService": _healthcare_services,
    "PractitionerRole": _practitioner_roles,
    "Endpoint": _endpoints,
}


def read_resource(store: Directory, resource_type: ResourceType, logical_id: str) -> Resource:
    """One directory resource by logical id; ``NOT_FOUND`` if there is none."""
    for resource in _COLLECT[resource_type](store):
        if resource["id"] == logical_id:
            return resource
    shown = logical_id if re.fullmatch(r"[A-Za-z0-9.\-]{1,64}", logical_id) else "this id"
    raise WijkbrugError(ErrorCode.NOT_FOUND, f"{resource_type}/{shown} is not known")


# ---------------------------------------------------------------- search parameters

ParamKind = Literal["id", "token", "string", "reference", "organization-identifier"]


@dataclass(frozen=True)
class SearchParam:
    """How one search parameter reads a resource: tokens are (system, code) pairs."""

    kind: ParamKind
    values: Callable[[Resource], list[Any]]


def _pairs(items: Iterable[Mapping[str, Any]], key: str = "value") -> list[tuple[Any, Any]]:
    return [(item.get("system"), item.get(key)) for item in items]


def _codings(concepts: Iterable[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    return [pair for c in concepts for pair in _pairs(c.get("coding", []), "code")]


def _contained_practitioner(resource: Resource) -> Resource:
    found: Resource = next(
        (c for c in resource.get("contained", []) if c.get("resourceType") == "Practitioner"),
        {},
    )
    return found


def _reference_of(element: str) -> Callable[[Resource], list[Any]]:
    return lambda r: [r[element]["reference"]] if element in r else []


_ID = SearchParam("id", lambda r: [r["id"]])
_NAME = SearchParam("string", lambda r: [r["name"]] if "name" in r else [])
_IDENTIFIER = SearchParam("token", lambda r: _pairs(r.get("identifier", [])))

SEARCH_PARAMS: dict[ResourceType, dict[str, SearchParam]] = {
    "Organization": {
        "_id": _ID,
        "identifier": _IDENTIFIER,
        "name": _NAME,
        "type": SearchParam("token", lambda r: _codings(r.get("type", []))),
    },
    "HealthcareService": {
        "_id": _ID,
        "name": _NAME,
        "organization": SearchParam("reference", _reference_of("providedBy")),
        "organization.identifier": SearchParam(
            "organization-identifier", _reference_of("providedBy")
        ),
        "service-type": SearchParam("token", lambda r: _codings(r.get("type", []))),
    },
    "PractitionerRole": {
        "_id": _ID,
        "identifier": SearchParam(
            "token", lambda r: _pairs(_contained_practitioner(r).get("identifier", []))
        ),
        "name": SearchParam(
            "string",
            lambda r: [n.get("text", "") for n in _contained_practitioner(r).get("name", [])],
        ),
        "organization": SearchParam("reference", _reference_of("organization")),
        "organization.identifier": SearchParam(
            "organization-identifier", _reference_of("organization")
        ),
    },
    "Endpoint": {
        "_id": _ID,
        "identifier": _IDENTIFIER,
        "name": _NAME,
        "organization": SearchParam("reference", _reference_of("managingOrganization")),
        "organization.identifier": SearchParam(
            "organization-identifier", _reference_of("managingOrganization")
        ),
    },
}
# Parameters every search takes: paging (fhirutil) and the response format.
_RESULT_PARAMS = frozenset({"_count", "_offset", "_format"})
_STRING_MODIFIERS = frozenset({"", "contains", "exact"})
_HINTS = {
    ("HealthcareService", "identifier"): (
        "a team has no business identifier; find a provider's teams with "
        "organization.identifier=<URA or AGB system>|<value>"
    ),
}


@dataclass(frozen=True)
class Clause:
    """One search parameter as sent: every clause must hold; any of its alternatives may."""

    param: SearchParam
    modifier: str
    alternatives: tuple[str, ...]


def _split(text: str, separator: str) -> list[str]:
    r"""Split at every ``separator`` not escaped with ``\`` (escapes are kept)."""
    parts = [""]
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            parts[-1] += text[index : index + 2]
            index += 2
            continue
        if char == separator:
            parts.append("")
        else:
            parts[-1] += char
        index += 1
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _unsupported(resource_type: str, names: Sequence[str]) -> WijkbrugError:
    issues = [
        Issue(
            ErrorCode.NOT_SUPPORTED,
            _HINTS.get((resource_type, name), f"{resource_type} has no search parameter {name}"),
            name,
        )
        for name in names
    ]
    # 400 (not the 415 of NOT_SUPPORTED): the request is wrong, not its media type.
    return WijkbrugError(
        ErrorCode.INVALID,
        f"unsupported search parameter(s) for {resource_type}: {', '.join(names)}",
        issues,
    )


def compile_search(resource_type: ResourceType, params: QueryParams) -> list[Clause]:
    """The clauses of a search, or a 400 ``WijkbrugError`` naming every unsupported one."""
    known = SEARCH_PARAMS[resource_type]
    clauses: list[Clause] = []
    unknown: list[str] = []
    for key, raw in params.multi_items():
        if key in _RESULT_PARAMS:
            continue
        name, _, modifier = key.partition(":")
        param = known.get(name)
        allowed = _STRING_MODIFIERS if param and param.kind == "string" else {""}
        if param is None or modifier not in allowed:
            if key not in unknown:
                unknown.append(key)
            continue
        alternatives = tuple(a for a in _split(raw, ",") if a)
        if alternatives:  # an empty parameter is ignored (FHIR search)
            clauses.append(Clause(param, modifier, alternatives))
    if unknown:
        raise _unsupported(resource_type, unknown)
    return clauses


def _fold(text: str) -> str:
    """Case- and accent-insensitive form (FHIR string search): ``"Één"`` -> ``"een"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _string_hit(value: str, wanted: str, modifier: str) -> bool:
    if modifier == "exact":
        return value == wanted
    if modifier == "contains":
        return _fold(wanted) in _fold(value)
    return _fold(value).startswith(_fold(wanted))


def _token_hit(pairs: Iterable[tuple[Any, Any]], token: str) -> bool:
    """``code``, ``system|code``, ``|code`` (no system) or ``system|`` (any code)."""
    parts = _split(token, "|")
    if len(parts) == 1:
        code = _unescape(parts[0])
        return any(value == code for _, value in pairs)
    system = normalise_system(_unescape(parts[0]))
    code = _unescape("|".join(parts[1:]))
    for have_system, value in pairs:
        if (have_system or "") != system:
            continue
        if not code or value == code:
            return True
    return False


def _reference_key(text: str) -> str:
    """``org-3``, ``Organization/org-3`` or a full URL -> ``Organization/org-3``."""
    parts = _unescape(text).rstrip("/").split("/")
    if len(parts) >= 2:
        return f"{parts[-2]}/{parts[-1]}"
    return f"Organization/{parts[0]}"


def _predicate(
    clause: Clause, organizations: Callable[[], list[Resource]]
) -> Callable[[Resource], bool]:
    param, alternatives = clause.param, clause.alternatives
    if param.kind == "id":
        wanted = {_unescape(a) for a in alternatives}
        return lambda r: r["id"] in wanted
    if param.kind == "string":
        texts = [_unescape(a) for a in alternatives]
        return lambda r: any(
            _string_hit(v, t, clause.modifier) for v in param.values(r) for t in texts
        )
    if param.kind == "token":
        return lambda r: any(_token_hit(param.values(r), a) for a in alternatives)
    if param.kind == "reference":
        keys = {_reference_key(a) for a in alternatives}
        return lambda r: any(v in keys for v in param.values(r))
    # organization.identifier: the organisations with that identifier, then by reference.
    refs = {
        f"Organization/{o['id']}"
        for o in organizations()
        if any(_token_hit(_pairs(o.get("identifier", [])), a) for a in alternatives)
    }
    return lambda r: any(v in refs for v in param.values(r))


def search_resources(
    store: Directory, resource_type: ResourceType, clauses: Sequence[Clause]
) -> list[Resource]:
    """The resources of one type that satisfy every clause, in logical-id order of the store."""
    resources = _COLLECT[resource_type](store)
    org_cache: list[list[Resource]] = []

    def organizations() -> list[Resource]:
        if not org_cache:
            org_cache.append(_organizations(store))
        return org_cache[0]

    predicates = [_predicate(c, organizations) for c in clauses]
    return [r for r in resources if all(p(r) for p in predicates)]


# ---------------------------------------------------------------- HTTP


async def _read(bridge: BridgeDep, resource_type: ResourceType, logical_id: str) -> Response:
    resource = await asyncio.to_thread(read_resource, bridge.store, resource_type, logical_id)
    return fhir_response(resource)


async def _search(bridge: BridgeDep, resource_type: ResourceType, request: Request) -> Response:
    params = request.query_params
    clauses = compile_search(resource_type, params)
    count, offset = page_params(params)
    found = await asyncio.to_thread(search_resources, bridge.store, resource_type, clauses)
    base = f"{bridge.settings.public_url}/fhir/{resource_type}"
    entries = [
        {"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in found[offset : offset + count]
    ]
    return fhir_response(search_bundle(base, params, offset, len(found), entries))


@router.get("/Organization/{logical_id}")
async def read_organization(logical_id: str, client: CurrentClient, bridge: BridgeDep) -> Response:
    """One organisation of the region (practice, home-care provider, huisartsenpost)."""
    return await _read(bridge, "Organization", logical_id)


@router.get("/Organization")
async def search_organizations(
    request: Request, client: CurrentClient, bridge: BridgeDep
) -> Response:
    """Search organisations by ``identifier`` (AGB, URA), ``name`` or ``type``."""
    return await _search(bridge, "Organization", request)


@router.get("/HealthcareService/{logical_id}")
async def read_healthcare_service(
    logical_id: str, client: CurrentClient, bridge: BridgeDep
) -> Response:
    """One provider team: its care types, PC4 coverage and nurses' Endpoints."""
    return await _read(bridge, "HealthcareService", logical_id)


@router.get("/HealthcareService")
async def search_healthcare_services(
    request: Request, client: CurrentClient, bridge: BridgeDep
) -> Response:
    """Search teams by ``name``, ``organization`` (or its identifier) or ``service-type``."""
    return await _search(bridge, "HealthcareService", request)


@router.get("/PractitionerRole/{logical_id}")
async def read_practitioner_role(
    logical_id: str, client: CurrentClient, bridge: BridgeDep
) -> Response:
    """One practitioner at her organisation."""
    return await _read(bridge, "PractitionerRole", logical_id)


@router.get("/PractitionerRole")
async def search_practitioner_roles(
    request: Request, client: CurrentClient, bridge: BridgeDep
) -> Response:
    """Search practitioners by ``identifier`` (AGB, UZI, BIG), ``name`` or ``organization``."""
    return await _search(bridge, "PractitionerRole", request)


@router.get("/Endpoint/{logical_id}")
async def read_endpoint(logical_id: str, client: CurrentClient, bridge: BridgeDep) -> Response:
    """The Matrix Endpoint of one nurse or practitioner."""
    return await _read(bridge, "Endpoint", logical_id)


@router.get("/Endpoint")
async def search_endpoints(request: Request, client: CurrentClient, bridge: BridgeDep) -> Response:
    """Search Matrix Endpoints by ``identifier`` (the Matrix ID), ``name`` or ``organization``."""
    return await _search(bridge, "Endpoint", request)
