"""The admin JSON API under ``/admin/api`` (``Authorization: Bearer <admin token>``).

    request --bearer--> AdminRef (role, scope)
        GET     read the directory, routes, coverage, decisions, escalations, changes
                (every admin)
        POST/DELETE --parse (400 naming the field)--> admin_policy verdict
                        refused: recorded (store.record_denied), 403
                        allowed: store method with actor=admin.actor (change recorded)

The operations below (``add_route``, ``mark_full``, ...) are shared with the admin page,
so both apply the same scope rules and record the same changes. Errors are
``WijkbrugError``s, rendered by the app as ``{"error": code, "message": "<field>: ..."}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from bridge import admin_policy
from bridge.admin_policy import RouteArea, Verdict
from bridge.agreements import parse_sheet
from bridge.canonical import CareType, Priority
from bridge.db import utcnow
from bridge.directory import AdminRef, OrgRef, RouteRow, TeamRef, parse_pc4_range
from bridge.errors import ErrorCode, WijkbrugError
from bridge.identifiers import normalise_postcode
from bridge.routing import Decision, RouteRule, Unavailability
from bridge.store import Store
from bridge.web.deps import BridgeDep, bearer_token

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin/api", tags=["admin"])

MAX_SHEET = 5 * 1024 * 1024
MAX_BODY = 256 * 1024
MAX_ID = 2**31 - 1
MAX_RANK = 99
MAX_NAME = 200


# ---------------------------------------------------------------------- authentication


async def current_admin(request: Request, bridge: BridgeDep) -> AdminRef:
    """The admin of the bearer token; 401 without a valid one."""
    token = bearer_token(request)
    if token is None:
        raise WijkbrugError(ErrorCode.UNAUTHORIZED, "missing bearer token (Authorization header)")
    admin = await asyncio.to_thread(bridge.store.admin_for_token, token)
    if admin is None:
        raise WijkbrugError(ErrorCode.UNAUTHORIZED, "unknown or revoked admin token")
    return admin


CurrentAdmin = Annotated[AdminRef, Depends(current_admin)]


# ---------------------------------------------------------------------- views


def org_view(org: OrgRef) -> dict[str, Any]:
    return {"id": org.id, "kind": org.kind, "name": org.name, "agb": org.agb, "ura": org.ura}


def _org_short(org: OrgRef | None) -> dict[str, Any] | None:
    return None if org is None else {"id": org.id, "name": org.name, "code": org.code}


def team_view(team: TeamRef) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "provider": _org_short(team.provider),
        "members": list(team.members),
        "care_types": [c.value for c in team.care_types],
        "pc4": [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in team.pc4_ranges],
    }


def route_view(rule: RouteRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "care_type": rule.care_type.value,
        "area": rule.area_text(),
        "wijk": rule.wijk,
        "pc4_from": rule.pc4_from,
        "pc4_to": rule.pc4_to,
        "provider": {
            "id": rule.provider_id,
            "name": rule.provider_name,
            "code": rule.provider_code,
        },
        "rank": rule.rank,
        "valid_from": rule.valid_from.isoformat() if rule.valid_from else None,
        "valid_to": rule.valid_to.isoformat() if rule.valid_to else None,
    }


def block_view(
    block: Unavailability,
    orgs: Mapping[int, OrgRef],
    teams: Mapping[int, TeamRef],
    now: datetime,
) -> dict[str, Any]:
    team = teams.get(block.team_id) if block.team_id is not None else None
    return {
        "id": block.id,
        "provider": _org_short(orgs.get(block.provider_id)),
        "team": None if team is None else {"id": team.id, "name": team.name},
        "care_type": block.care_type.value if block.care_type else None,
        "from": block.start.isoformat(),
        "until": block.end.isoformat(),
        "note": block.note,
        "active": block.start <= now < block.end,
    }


def decision_view(decision: Decision, priority: Priority, at: datetime) -> dict[str, Any]:
    provider = None
    if decision.provider_id is not None:
        provider = {"id": decision.provider_id, "name": decision.provider_name}
    return {
        "care_type": decision.care_type.value,
        "pc4": decision.pc4,
        "priority": priority.value,
        "at": at.isoformat(),
        "routed": decision.routed,
        "provider": provider,
        "team_id": decision.team_id,
        "route_id": decision.rule_id,
        "reasons": list(decision.reasons),
        "fallbacks": list(decision.fallbacks),
    }


@dataclass(frozen=True)
class Coverage:
    """Which provider takes each (PC4, care type) of the region now, and where nobody does."""

    at: datetime
    areas: list[int]
    gaps: list[tuple[int, CareType]]
    providers: dict[tuple[int, CareType], str] = field(default_factory=dict)

    def provider(self, area: int, care_type: CareType) -> str | None:
        return self.providers.get((area, care_type))


def coverage(store: Store, at: datetime, areas: Sequence[int] | None = None) -> Coverage:
    """The coverage grid over ``areas`` (default: every PC4 the agreements mention)."""
    pc4s = list(areas) if areas is not None else store.known_areas()
    table = store.routing_table()
    gaps = table.gaps(pc4s, at)
    missing = set(gaps)
    providers = {
        (area, care): table.route_for(care, area, at).provider_name or ""
        for area in pc4s
        for care in CareType
        if (area, care) not in missing
    }
    return Coverage(at, pc4s, gaps, providers)


# ---------------------------------------------------------------------- input parsing


def whole(text: str) -> int | None:
    """``text`` as a non-negative whole number written in ASCII digits, else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None


def parse_moment(text: str, name: str) -> datetime:
    """An ISO date or date-time; without an offset it is UTC (as in the CLI and sheets)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise WijkbrugError(ErrorCode.VALUE, f"{name}: {text!r} is not an ISO date") from None


def care_type(text: str, name: str = "care_type") -> CareType:
    try:
        return CareType(text.strip())
    except ValueError:
        known = ", ".join(c.value for c in CareType)
        raise WijkbrugError(
            ErrorCode.VALUE, f"{name}: unknown care type {text!r} (one of {known})"
        ) from None


def object_id(text: str, name: str) -> int:
    value = whole(text)
    if value is None or not 1 <= value <= MAX_ID:
        raise WijkbrugError(ErrorCode.VALUE, f"{name}: {text!r} is not an id")
    return value


class Body:
    """A JSON object body, read field by field with errors that name the field."""

    def __init__(self, data: Any, allowed: Sequence[str]) -> None:
        if not isinstance(data, dict):
            raise WijkbrugError(ErrorCode.INVALID, "body: expected a JSON object")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise WijkbrugError(ErrorCode.VALUE, f"{unknown[0]}: unknown field")
        self.data: dict[str, Any] = data

    def text(self, name: str, *, required: bool = False, max_len: int = MAX_NAME) -> str | None:
        value = self.data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise WijkbrugError(ErrorCode.REQUIRED, f"{name}: required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise WijkbrugError(ErrorCode.VALUE, f"{name}: expected a string")
        text = str(value).strip()
        if len(text) > max_len:
            raise WijkbrugError(ErrorCode.VALUE, f"{name}: longer than {max_len} characters")
        return text

    def required(self, name: str, max_len: int = MAX_NAME) -> str:
        value = self.text(name, required=True, max_len=max_len)
        assert value is not None
        return value

    def texts(self, name: str) -> list[str]:
        value = self.data.get(name, [])
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise WijkbrugError(ErrorCode.VALUE, f"{name}: expected a list of strings")
        return [str(v).strip() for v in value if str(v).strip()]

    def rank(self) -> int:
        value = self.data.get("rank", 1)
        if isinstance(value, str):
            value = whole(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RANK:
            raise WijkbrugError(
                ErrorCode.VALUE, f"rank: must be a whole number from 1 (preferred) to {MAX_RANK}"
            )
        return value

    def moment(self, name: str) -> datetime | None:
        text = self.text(name, max_len=64)
        return None if text is None else parse_moment(text, name)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise WijkbrugError(ErrorCode.TOO_LARGE, f"body: larger than {MAX_BODY} bytes")
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise WijkbrugError(ErrorCode.INVALID, "body: not valid JSON") from None


# ---------------------------------------------------------------------- operations


@dataclass(frozen=True)
class RouteRequest:
    care_type: CareType
    provider: str
    area: RouteArea
    rank: int = 1
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def row(self) -> RouteRow:
        return RouteRow(
            self.care_type,
            self.provider,
            self.rank,
            self.area.pc4_from,
            self.area.pc4_to,
            self.area.wijk,
            self.valid_from,
            self.valid_to,
        )


@dataclass(frozen=True)
class FullRequest:
    """Mark a provider (or one of its teams) full for a care type (or all) until a moment."""

    provider: str
    until: datetime
    start: datetime | None = None
    team: str | None = None
    care_type: CareType | None = None
    note: str = ""


@dataclass(frozen=True)
class TeamRequest:
    provider: str
    name: str
    members: tuple[str, ...] = ()
    care_types: tuple[CareType, ...] = ()
    pc4_ranges: tuple[tuple[int, int], ...] = ()


def _check(store: Store, admin: AdminRef, action: str, target: str, verdict: Verdict) -> None:
    """Raise 403 for a refused action, after recording who tried what and why not."""
    if verdict.allowed:
        return
    store.record_denied(admin, action, target, verdict.reason)
    log.info("admin %s refused %s on %s", admin.id, action, target)
    details: dict[str, Any] = {"nl": verdict.reason_nl}
    if verdict.problems:
        details["errors"] = list(verdict.problems)
    raise WijkbrugError(ErrorCode.FORBIDDEN, verdict.reason, details=details)


def _provider(store: Store, code: str) -> OrgRef:
    try:
        org = store.find_org(code)
    except WijkbrugError as exc:
        raise WijkbrugError(exc.code, f"provider: {exc.message}") from None
    if org.kind != "provider":
        raise WijkbrugError(ErrorCode.VALUE, f"provider: {org.name} is not a home-care provider")
    return org


def add_route(store: Store, admin: AdminRef, request: RouteRequest) -> int:
    verdict = admin_policy.may_edit_route(admin, request.area, store.wijken())
    target = f"{request.care_type.value} in {request.area.text()}"
    _check(store, admin, "route.add", target, verdict)
    row = request.row()
    return store.add_route(
        row.care_type,
        row.pc4_from,
        row.pc4_to,
        row.provider_code,
        rank=row.rank,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        wijk=row.wijk,
        actor=admin.actor,
    )


def remove_route(store: Store, admin: AdminRef, route_id: int) -> None:
    rule = next((r for r in store.route_rules() if r.id == route_id), None)
    if rule is None:
        raise WijkbrugError(ErrorCode.NOT_FOUND, f"route_id: no route #{route_id}")
    area = RouteArea(rule.wijk) if rule.wijk else RouteArea(None, rule.pc4_from, rule.pc4_to)
    verdict = admin_policy.may_edit_route(admin, area, store.wijken())
    _check(store, admin, "route.remove", f"route {route_id}", verdict)
    store.remove_route(route_id, actor=admin.actor)


def import_sheet(store: Store, admin: AdminRef, text: str) -> tuple[int, int]:
    """Load an agreement sheet, all or nothing; returns (routes added, rows)."""
    rows, errors = parse_sheet(text)
    areas = [(line, RouteArea(r.wijk, r.pc4_from, r.pc4_to)) for line, r in rows]
    verdict = admin_policy.may_import_routes(admin, areas, store.wijken())
    _check(store, admin, "route.import", f"sheet of {len(rows)} row(s)", verdict)
    added = store.import_routes(rows, actor=admin.actor, sheet_errors=errors)
    return added, len(rows)


def mark_full(store: Store, admin: AdminRef, request: FullRequest) -> int:
    org = _provider(store, request.provider)
    verdict = admin_policy.may_manage_org(admin, (org.agb, org.ura))
    _check(store, admin, "availability.full", f"organisation {org.code}", verdict)
    start = request.start or utcnow()
    return store.add_unavailability(
        request.provider,
        start,
        request.until,
        care_type=request.care_type,
        team=request.team,
        note=request.note,
        actor=admin.actor,
    )


def clear_full(store: Store, admin: AdminRef, block_id: int) -> None:
    block = next((b for b in store.unavailability() if b.id == block_id), None)
    if block is None:
        raise WijkbrugError(ErrorCode.NOT_FOUND, f"availability_id: no unavailability #{block_id}")
    org = next((o for o in store.list_orgs() if o.id == block.provider_id), None)
    codes = (org.agb, org.ura) if org else ()
    verdict = admin_policy.may_manage_org(admin, codes)
    _check(store, admin, "availability.open", f"unavailability {block_id}", verdict)
    store.remove_unavailability(block_id, actor=admin.actor)


def add_team(store: Store, admin: AdminRef, request: TeamRequest) -> int:
    org = _provider(store, request.provider)
    verdict = admin_policy.may_manage_org(admin, (org.agb, org.ura))
    _check(store, admin, "team.add", f"organisation {org.code}", verdict)
    try:
        return store.add_team(
            request.provider,
            request.name,
            list(request.members),
            care_types=list(request.care_types),
            pc4_ranges=list(request.pc4_ranges),
            actor=admin.actor,
        )
    except WijkbrugError as exc:
        if exc.code is ErrorCode.CONFLICT:
            raise WijkbrugError(exc.code, f"name: {exc.message}") from None
        raise


def explain(
    store: Store, care: CareType, postcode: str, at: datetime, priority: Priority
) -> dict[str, Any]:
    """The decision and its reasons, as ``wijkbrug route explain`` prints them."""
    normal = normalise_postcode(postcode)
    if normal is None:
        raise WijkbrugError(ErrorCode.VALUE, f"postcode: {postcode!r} is not a Dutch postcode")
    decision = store.explain(care, normal, at, priority)
    return {"postcode": normal, **decision_view(decision, priority, at)}


# ---------------------------------------------------------------------- reading


def _limit(request: Request) -> int:
    value = whole(request.query_params.get("limit", "50"))
    if value is None or not 1 <= value <= 500:
        raise WijkbrugError(ErrorCode.VALUE, "limit: a whole number from 1 to 500")
    return value


def _at(request: Request) -> datetime:
    raw = request.query_params.get("at")
    return parse_moment(raw, "at") if raw else utcnow()


@router.get("/organisations")
async def list_organisations(admin: CurrentAdmin, bridge: BridgeDep) -> list[dict[str, Any]]:
    """The region's organisations: practices, providers, huisartsenposten."""
    return [org_view(o) for o in await asyncio.to_thread(bridge.store.list_orgs)]


@router.get("/teams")
async def list_teams(admin: CurrentAdmin, bridge: BridgeDep) -> list[dict[str, Any]]:
    """The providers' teams, with members, care types and areas."""
    return [team_view(t) for t in await asyncio.to_thread(bridge.store.list_teams)]


@router.get("/wijken")
async def list_wijken(admin: CurrentAdmin, bridge: BridgeDep) -> list[dict[str, Any]]:
    """The named wijken and their PC4s."""
    wijken = await asyncio.to_thread(bridge.store.wijken)
    return [{"name": name, "pc4": areas} for name, areas in wijken.items()]


@router.get("/routes")
async def list_routes(admin: CurrentAdmin, bridge: BridgeDep) -> list[dict[str, Any]]:
    """The preferred-provider routes."""
    rules = await asyncio.to_thread(bridge.store.route_rules)
    rules.sort(key=lambda r: (r.care_type.value, r.pc4_from, r.rank, r.id))
    return [route_view(r) for r in rules]


def _availability(store: Store) -> list[dict[str, Any]]:
    orgs = {o.id: o for o in store.list_orgs()}
    teams = {t.id: t for t in store.list_teams()}
    now = utcnow()
    return [block_view(b, orgs, teams, now) for b in store.unavailability()]


@router.get("/availability")
async def list_availability(admin: CurrentAdmin, bridge: BridgeDep) -> list[dict[str, Any]]:
    """The periods in which providers or teams are full."""
    return await asyncio.to_thread(_availability, bridge.store)


@router.get("/coverage")
async def get_coverage(request: Request, admin: CurrentAdmin, bridge: BridgeDep) -> dict[str, Any]:
    """PC4 x care type pairs with no usable route (``at``, repeatable ``pc4`` ranges)."""
    at = _at(request)
    ranges = [parse_pc4_range(r) for r in request.query_params.getlist("pc4")]
    if sum(hi - lo + 1 for lo, hi in ranges) > 10_000:
        raise WijkbrugError(ErrorCode.VALUE, "pc4: at most 10000 PC4s at once")
    areas = sorted({a for lo, hi in ranges for a in range(lo, hi + 1)}) if ranges else None
    grid = await asyncio.to_thread(coverage, bridge.store, at, areas)
    return {
        "at": at.isoformat(),
        "care_types": [c.value for c in CareType],
        "areas": grid.areas,
        "gaps": [{"pc4": area, "care_type": care.value} for area, care in grid.gaps],
    }


@router.get("/decisions")
async def list_decisions(
    request: Request, admin: CurrentAdmin, bridge: BridgeDep
) -> list[dict[str, Any]]:
    """The latest routing decisions (area and care type; no patient data)."""
    return await asyncio.to_thread(bridge.store.recent_decisions, _limit(request))


@router.get("/escalations")
async def list_escalations(
    request: Request, admin: CurrentAdmin, bridge: BridgeDep
) -> list[dict[str, Any]]:
    """The latest escalations of unacknowledged urgent messages."""
    return await asyncio.to_thread(bridge.store.escalations, _limit(request))


@router.get("/changes")
async def list_changes(
    request: Request, admin: CurrentAdmin, bridge: BridgeDep
) -> list[dict[str, Any]]:
    """The change record: who changed what, before and after (refusals too)."""
    return await asyncio.to_thread(bridge.store.changes, _limit(request))


@router.get("/explain")
async def explain_route(request: Request, admin: CurrentAdmin, bridge: BridgeDep) -> dict[str, Any]:
    """Which provider a case would go to, and why (as ``wijkbrug route explain``)."""
    params = request.query_params
    care_text, postcode = params.get("care_type"), params.get("postcode")
    if not care_text:
        raise WijkbrugError(ErrorCode.REQUIRED, "care_type: required")
    if not postcode:
        raise WijkbrugError(ErrorCode.REQUIRED, "postcode: required")
    priority_text = params.get("priority") or "routine"
    try:
        priority = Priority(priority_text)
    except ValueError:
        known = ", ".join(p.value for p in Priority)
        raise WijkbrugError(
            ErrorCode.VALUE, f"priority: unknown priority {priority_text!r} (one of {known})"
        ) from None
    care = care_type(care_text)
    at = _at(request)
    return await asyncio.to_thread(explain, bridge.store, care, postcode, at, priority)


# ---------------------------------------------------------------------- changing


def route_request(body: Body) -> RouteRequest:
    pc4_text, wijk = body.text("pc4", max_len=20), body.text("wijk")
    if (pc4_text is None) == (wijk is None):
        raise WijkbrugError(ErrorCode.REQUIRED, "pc4: give exactly one of pc4 and wijk")
    area = RouteArea(wijk)
    if pc4_text is not None:
        low, high = parse_pc4_range(pc4_text)
        area = RouteArea(None, low, high)
    return RouteRequest(
        care_type(body.required("care_type")),
        body.required("provider"),
        area,
        body.rank(),
        body.moment("valid_from"),
        body.moment("valid_to"),
    )


@router.post("/routes", status_code=201)
async def create_route(request: Request, admin: CurrentAdmin, bridge: BridgeDep) -> dict[str, Any]:
    """Add a route: care type x (PC4 range or wijk) -> provider, with rank and validity."""
    fields = ("care_type", "pc4", "wijk", "provider", "rank", "valid_from", "valid_to")
    route = route_request(Body(await read_json(request), fields))
    route_id = await asyncio.to_thread(add_route, bridge.store, admin, route)
    rules = await asyncio.to_thread(bridge.store.route_rules)
    return route_view(next(r for r in rules if r.id == route_id))


@router.delete("/routes/{route_id}", status_code=204)
async def delete_route(route_id: str, admin: CurrentAdmin, bridge: BridgeDep) -> Response:
    """Remove a route."""
    await asyncio.to_thread(remove_route, bridge.store, admin, object_id(route_id, "route_id"))
    return Response(status_code=204)


@router.post("/routes/import")
async def import_routes(request: Request, admin: CurrentAdmin, bridge: BridgeDep) -> Response:
    """Load an agreement sheet (CSV body) in one transaction; any bad row changes nothing."""
    raw = await request.body()
    if len(raw) > MAX_SHEET:
        raise WijkbrugError(ErrorCode.TOO_LARGE, f"body: larger than {MAX_SHEET} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WijkbrugError(ErrorCode.VALUE, "body: the sheet is not UTF-8 text") from None
    try:
        added, rows = await asyncio.to_thread(import_sheet, bridge.store, admin, text)
    except WijkbrugError as exc:
        if "errors" not in exc.details:
            raise
        # The error lists every bad row, by line number, for the admin to fix at once.
        head = exc.message.split("\n", 1)[0].rstrip(":")
        message = head if head.startswith("sheet:") else f"sheet: {head}"
        body = {"error": exc.code.value, "message": message, "errors": exc.details["errors"]}
        return JSONResponse(body, status_code=exc.status)
    return JSONResponse({"added": added, "rows": rows})


@router.post("/availability", status_code=201)
async def create_availability(
    request: Request, admin: CurrentAdmin, bridge: BridgeDep
) -> dict[str, Any]:
    """Mark a provider (or one of its teams) full until a moment ("vol tot vrijdag")."""
    fields = ("provider", "team", "care_type", "from", "until", "note")
    body = Body(await read_json(request), fields)
    care_text = body.text("care_type")
    until = body.moment("until")
    if until is None:
        raise WijkbrugError(ErrorCode.REQUIRED, "until: required")
    full = FullRequest(
        provider=body.required("provider"),
        until=until,
        start=body.moment("from"),
        team=body.text("team"),
        care_type=care_type(care_text) if care_text else None,
        note=body.text("note") or "",
    )
    block_id = await asyncio.to_thread(mark_full, bridge.store, admin, full)
    blocks = await asyncio.to_thread(_availability, bridge.store)
    return next(b for b in blocks if b["id"] == block_id)


@router.delete("/availability/{block_id}", status_code=204)
async def delete_availability(block_id: str, admin: CurrentAdmin, bridge: BridgeDep) -> Response:
    """Clear a "full" period: the provider takes cases again."""
    await asyncio.to_thread(clear_full, bridge.store, admin, object_id(block_id, "availability_id"))
    return Response(status_code=204)


@router.post("/teams", status_code=201)
async def create_team(request: Request, admin: CurrentAdmin, bridge: BridgeDep) -> dict[str, Any]:
    """Add a team to a provider: its nurses' Matrix IDs, care types and PC4 ranges."""
    body = Body(await read_json(request), ("provider", "name", "members", "care_types", "pc4"))
    members = body.texts("members")
    if any(len(m) > 255 for m in members):
        raise WijkbrugError(ErrorCode.VALUE, "members: a Matrix ID is at most 255 characters")
    team = TeamRequest(
        provider=body.required("provider"),
        name=body.required("name"),
        members=tuple(members),
        care_types=tuple(care_type(c, "care_types") for c in body.texts("care_types")),
        pc4_ranges=tuple(parse_pc4_range(r) for r in body.texts("pc4")),
    )
    team_id = await asyncio.to_thread(add_team, bridge.store, admin, team)
    teams = await asyncio.to_thread(bridge.store.list_teams)
    return team_view(next(t for t in teams if t.id == team_id))
