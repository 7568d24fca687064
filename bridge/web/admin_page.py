"""The admin page ``/admin``: server-rendered forms and tables, in Dutch, no JavaScript.

    GET  /admin                 login form, or the region: coverage grid, routes,
                                availability, teams, organisations, wijken, decisions,
                                change record
    POST /admin/login           admin token -> signed session cookie (HttpOnly, Strict)
    POST /admin/<form>          check the form (Dutch message naming the field), then the
                                same operation as the admin API (scope rules, change
                                record); success -> 303 back to /admin, error -> the page
                                again with the message beside the field and the input kept
    POST /admin/logout          drop the cookie

The session cookie holds only the admin's id, signed (itsdangerous) with a secret derived
from the keyring; the admin is looked up again on every request, so a revoked token ends
the session. Every form carries a CSRF token bound to the session cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import FormData

from bridge import admin_policy
from bridge.admin_policy import ROLE_LABELS, RouteArea
from bridge.canonical import CareType, Priority
from bridge.db import utcnow
from bridge.directory import AdminRef
from bridge.errors import ErrorCode, WijkbrugError
from bridge.identifiers import is_matrix_user_id, normalise_postcode
from bridge.routing import AMSTERDAM, PC4_MAX, PC4_MIN
from bridge.service import Bridge
from bridge.store import Store
from bridge.web import admin_api
from bridge.web.admin_api import FullRequest, RouteRequest, TeamRequest
from bridge.web.deps import BridgeDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", include_in_schema=False)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

COOKIE = "wijkbrug_admin"
SESSION_SECONDS = 8 * 3600
_SALT = "wijkbrug.admin.session"
_PC4 = re.compile(r"^\s*(\d{4})\s*(?:[-–]\s*(\d{4}))?\s*$")
_LIST_SPLIT = re.compile(r"[\s,;]+")

# Messages after a successful form, by the code in the redirect (never free text), and
# the section of the page they are shown in (the redirect scrolls there).
DONE = {
    "route-added": ("Route #{id} is toegevoegd.", "routes"),
    "route-removed": ("Route #{id} is verwijderd.", "routes"),
    "team-added": ("Team #{id} is toegevoegd.", "teams"),
    "full-added": ("Vol-melding #{id} is vastgelegd.", "beschikbaarheid"),
    "full-cleared": ("Vol-melding #{id} is opgeheven.", "beschikbaarheid"),
}

# Field names in the store's and the policy's messages -> the form field they are about.
_FIELD_OF = {
    "pc4": "pc4",
    "wijk": "wijk",
    "rank": "rank",
    "provider": "provider",
    "valid_from": "valid_from",
    "valid_to": "valid_to",
    "team": "team",
    "until": "until",
    "name": "name",
    "member": "members",
    "members": "members",
}


# ---------------------------------------------------------------------- session


def _signer(store: Store) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(store.box.derive("admin-session"), salt=_SALT)


def _csrf(store: Store, cookie: str) -> str:
    key = store.box.derive("admin-session").encode()
    return hmac.new(key, b"csrf\x00" + cookie.encode(), hashlib.sha256).hexdigest()


def _session(request: Request, store: Store) -> AdminRef | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        data = _signer(store).loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:  # also an expired one (SignatureExpired is a BadSignature)
        return None
    admin_id = data.get("a") if isinstance(data, dict) else None
    if not isinstance(admin_id, int):
        return None
    return store.admin_by_id(admin_id)


def _csrf_ok(request: Request, store: Store, form: FormData) -> bool:
    sent = form.get("csrf")
    cookie = request.cookies.get(COOKIE, "")
    return isinstance(sent, str) and hmac.compare_digest(sent, _csrf(store, cookie))


# ---------------------------------------------------------------------- form reading


@dataclass
class FormState:
    """A submitted form that was refused: what was typed, and what is wrong where."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # field -> Dutch message
    message: str = ""  # a refusal that is not about one field

    def value(self, name: str) -> Any:
        return self.values.get(name, "")

    @property
    def first_error(self) -> str | None:
        """The field the browser focuses (and scrolls to) when the page comes back."""
        return next(iter(self.errors), None)


class Invalid(Exception):
    """The form has errors; the page shows them beside the fields."""


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _values(form: FormData, *multi: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: _text(form, k) for k in form if k not in ("csrf", *multi)}
    for name in multi:
        out[name] = [v for v in form.getlist(name) if isinstance(v, str)]
    return out


def _pc4(text: str) -> tuple[int, int] | None:
    match = _PC4.match(text)
    if not match:
        return None
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    return (low, high) if PC4_MIN <= low <= high <= PC4_MAX else None


def _day(text: str) -> date | None:
    """A date from a date field (``jjjj-mm-dd``), within years that make sense here."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2999 else None


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=AMSTERDAM)


def _care(text: str) -> CareType | None:
    try:
        return CareType(text)
    except ValueError:
        return None


def _route_request(form: FormData, state: FormState) -> RouteRequest:
    errors = state.errors
    care = _care(_text(form, "care_type"))
    if care is None:
        errors["care_type"] = "Zorgsoort: kies een zorgsoort."
    pc4_text, wijk = _text(form, "pc4"), _text(form, "wijk")
    area = RouteArea(wijk or None)
    if pc4_text and wijk:
        errors["wijk"] = "Wijk: kies een wijk óf vul een PC4-bereik in, niet allebei."
    elif not pc4_text and not wijk:
        errors["pc4"] = "PC4 of bereik: vul een PC4 of bereik in, of kies een wijk."
    elif pc4_text:
        span = _pc4(pc4_text)
        if span is None:
            errors["pc4"] = (
                f"PC4 of bereik: ‘{pc4_text}’ is geen PC4 (1000–9999) of bereik "
                "zoals 1091-1098 (van ≤ tot)."
            )
        else:
            area = RouteArea(None, *span)
    provider = _text(form, "provider")
    if not provider:
        errors["provider"] = "Aanbieder: kies een aanbieder."
    rank_text = _text(form, "rank") or "1"
    rank = admin_api.whole(rank_text)
    if rank is None or not 1 <= rank <= admin_api.MAX_RANK:
        errors["rank"] = f"Rang: een heel getal van 1 (voorkeur) tot {admin_api.MAX_RANK}."
    bounds: dict[str, datetime | None] = {}
    for name, label in (("valid_from", "Geldig vanaf"), ("valid_to", "Geldig tot")):
        text = _text(form, name)
        day = _day(text) if text else None
        if text and day is None:
            errors[name] = f"{label}: ‘{text}’ is geen datum (jjjj-mm-dd, 1900–2999)."
        bounds[name] = _local_midnight(day) if day else None
    start, end = bounds["valid_from"], bounds["valid_to"]
    if start and end and end <= start and "valid_to" not in errors:
        errors["valid_to"] = "Geldig tot: moet na ‘geldig vanaf’ liggen."
    if errors or care is None or rank is None:
        raise Invalid
    return RouteRequest(care, provider, area, rank, start, end)


def _full_request(form: FormData, state: FormState) -> FullRequest:
    errors = state.errors
    provider = _text(form, "provider")
    if not provider:
        errors["provider"] = "Aanbieder: kies een aanbieder."
    care_text = _text(form, "care_type")
    care = _care(care_text) if care_text else None
    if care_text and care is None:
        errors["care_type"] = "Zorgsoort: kies een zorgsoort of ‘alle zorgsoorten’."
    start_text, until_text = _text(form, "start"), _text(form, "until")
    start_day = _day(start_text) if start_text else None
    if start_text and start_day is None:
        errors["start"] = f"Vanaf: ‘{start_text}’ is geen datum (jjjj-mm-dd, 1900–2999)."
    until_day = _day(until_text) if until_text else None
    if not until_text:
        errors["until"] = "Vol tot en met: vul de laatste dag in dat de aanbieder vol is."
    elif until_day is None:
        errors["until"] = f"Vol tot en met: ‘{until_text}’ is geen datum (jjjj-mm-dd, 1900–2999)."
    elif start_day and until_day < start_day:
        errors["until"] = "Vol tot en met: ligt vóór ‘vanaf’."
    note = _text(form, "note")
    if len(note) > 200:
        errors["note"] = "Toelichting: hoogstens 200 tekens."
    if errors or until_day is None:
        raise Invalid
    start = _local_midnight(start_day) if start_day else None
    until = _local_midnight(until_day + timedelta(days=1))  # "t/m vrijdag": until Saturday
    team = _text(form, "team") or None
    return FullRequest(provider, until, start, team, care, note)


def _team_request(form: FormData, state: FormState) -> TeamRequest:
    errors = state.errors
    provider = _text(form, "provider")
    if not provider:
        errors["provider"] = "Aanbieder: kies een aanbieder."
    name = _text(form, "name")
    if not name:
        errors["name"] = "Naam: geef het team een naam."
    elif len(name) > admin_api.MAX_NAME:
        errors["name"] = f"Naam: hoogstens {admin_api.MAX_NAME} tekens."
    members = [m for m in _LIST_SPLIT.split(_text(form, "members")) if m]
    bad = [m for m in members if not is_matrix_user_id(m) or len(m) > 255]
    if bad:
        errors["members"] = (
            f"Leden: ‘{bad[0]}’ is geen Matrix-ID (zoals @naam:server.nl); één per regel."
        )
    care_types: list[CareType] = []
    for text in form.getlist("care_types"):
        care = _care(text) if isinstance(text, str) else None
        if care is None:
            errors["care_types"] = "Zorgsoorten: kies uit de lijst."
        else:
            care_types.append(care)
    ranges: list[tuple[int, int]] = []
    for text in (t for t in re.split(r"[,;\n]+", _text(form, "pc4")) if t.strip()):
        span = _pc4(text)
        if span is None:
            errors["pc4"] = (
                f"PC4-gebieden: ‘{text.strip()}’ is geen PC4 (1000–9999) of bereik zoals 1091-1098."
            )
            break
        ranges.append(span)
    if errors:
        raise Invalid
    return TeamRequest(provider, name, tuple(members), tuple(care_types), tuple(ranges))


def _refusal(state: FormState, error: WijkbrugError, labels: dict[str, str]) -> None:
    """Put a refusal of the store or the scope rules beside the field it names."""
    prefix, sep, rest = error.message.partition(": ")
    form_field = _FIELD_OF.get(prefix) if sep else None
    dutch = error.details.get("nl")  # the scope rules say why in Dutch too
    if isinstance(dutch, str) and dutch:
        rest = dutch.partition(": ")[2] or dutch
    lead = {
        ErrorCode.FORBIDDEN: "Niet toegestaan voor jouw rol",
        ErrorCode.CONFLICT: "Botst met wat er al is",
        ErrorCode.NOT_FOUND: "Niet gevonden",
    }.get(error.code, "Niet opgeslagen")
    if form_field is not None and form_field in labels:
        state.errors[form_field] = f"{labels[form_field]}: {lead.lower()} — {rest}"
    else:
        state.message = f"{lead}: {rest if sep else error.message}"


# ---------------------------------------------------------------------- page content


@dataclass(frozen=True)
class Band:
    """Consecutive PC4s whose row of the coverage grid is the same."""

    first: int
    last: int
    cells: tuple[tuple[CareType, str | None], ...]  # care type -> provider, None = gap

    @property
    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}–{self.last}"


def _bands(grid: admin_api.Coverage) -> list[Band]:
    bands: list[Band] = []
    for area in grid.areas:
        cells = tuple((care, grid.provider(area, care)) for care in CareType)
        if bands and bands[-1].cells == cells and bands[-1].last == area - 1:
            bands[-1] = Band(bands[-1].first, area, cells)
        else:
            bands.append(Band(area, area, cells))
    return bands


def _when(moment: datetime | None, with_time: bool = True) -> str:
    if moment is None:
        return "…"
    local = moment.astimezone(AMSTERDAM)
    return local.strftime("%d-%m-%Y %H:%M" if with_time else "%d-%m-%Y")


def _iso_when(text: str) -> str:
    try:
        return _when(datetime.fromisoformat(text))
    except ValueError:
        return text


def _compact(value: Any) -> str:
    return "—" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


templates.env.filters["when"] = _when
templates.env.filters["iso_when"] = _iso_when
templates.env.filters["compact"] = _compact


def _explain(request: Request, store: Store) -> dict[str, Any] | None:
    params = request.query_params
    care_text, postcode = params.get("uitleg_zorgsoort"), params.get("uitleg_postcode")
    if care_text is None and postcode is None:
        return None
    out: dict[str, Any] = {"care_type": care_text or "", "postcode": postcode or ""}
    care = _care(care_text or "")
    if care is None:
        out["error"] = "Zorgsoort: kies een zorgsoort."
    elif not postcode or normalise_postcode(postcode) is None:
        out["error"] = f"Postcode: ‘{postcode or ''}’ is geen Nederlandse postcode (1234 AB)."
    else:
        out["result"] = admin_api.explain(store, care, postcode, utcnow(), Priority.ROUTINE)
    return out


def _scope_hint(admin: AdminRef, wijken: dict[str, list[int]]) -> str:
    """For a coordinator: their wijken and PC4s (where the route form will work)."""
    if admin.role != admin_policy.WIJK_COORDINATOR:
        return ""
    parts = []
    for name in admin.scope:
        areas = wijken.get(name)
        span = admin_policy.pc4_ranges(areas) if areas else "onbekende wijk"
        parts.append(f"{name} ({span})")
    return ", ".join(parts)


def _dashboard(
    request: Request, store: Store, admin: AdminRef, forms: dict[str, FormState]
) -> dict[str, Any]:
    now = utcnow()
    at = now
    day_text = request.query_params.get("datum", "")
    day = _day(day_text) if day_text else None
    if day is not None:
        at = datetime.combine(day, time(12, 0), tzinfo=AMSTERDAM)
    orgs = store.list_orgs()
    teams = store.list_teams()
    wijken = store.wijken()
    rules = sorted(store.route_rules(), key=lambda r: (r.care_type.value, r.pc4_from, r.rank))
    by_id = {o.id: o for o in orgs}
    team_by_id = {t.id: t for t in teams}
    providers = [o for o in orgs if o.kind == "provider"]
    managed = [o for o in providers if admin_policy.may_manage_org(admin, (o.agb, o.ura)).allowed]
    routes = [
        {
            "rule": r,
            "can_remove": admin_policy.may_edit_route(
                admin,
                RouteArea(r.wijk) if r.wijk else RouteArea(None, r.pc4_from, r.pc4_to),
                wijken,
            ).allowed,
        }
        for r in rules
    ]
    blocks = []
    for b in store.unavailability():
        org = by_id.get(b.provider_id)
        view = admin_api.block_view(b, by_id, team_by_id, now)
        view["can_clear"] = admin_policy.may_manage_org(
            admin, (org.agb, org.ura) if org else ()
        ).allowed
        view["ends_at"] = b.end
        view["starts_at"] = b.start
        blocks.append(view)
    grid = admin_api.coverage(store, at)
    flash, flash_section = "", ""
    done = request.query_params.get("klaar", "")
    done_id = admin_api.whole(request.query_params.get("id", ""))
    if done in DONE and done_id is not None:
        text, flash_section = DONE[done]
        flash = text.format(id=done_id)
    return {
        "admin": admin,
        "role_label": ROLE_LABELS.get(admin.role, admin.role),
        "csrf": _csrf(store, request.cookies.get(COOKIE, "")),
        "flash": flash,
        "flash_section": flash_section,
        "care_labels": {c.value: c.display for c in CareType},
        "forms": forms,
        "care_types": list(CareType),
        "orgs": orgs,
        "providers": providers,
        "managed": managed,
        "teams": teams,
        "wijken": wijken,
        "routes": routes,
        "blocks": blocks,
        "coverage": grid,
        "bands": _bands(grid),
        "coverage_day": day.isoformat() if day else "",
        "coverage_at": at,
        "decisions": store.recent_decisions(30),
        "escalations": store.escalations(30),
        "changes": store.changes(50),
        "explain": _explain(request, store),
        "scope_hint": _scope_hint(admin, wijken),
        "can_routes": admin_policy.may_edit_routes_at_all(admin),
        "can_orgs": admin_policy.manages_orgs_at_all(admin),
        "kind_labels": {"practice": "huisartsenpraktijk", "provider": "thuiszorg", "hap": "HAP"},
    }


# The page loads nothing from elsewhere, runs no script, is never framed (clickjacking) and
# is not kept in caches (it shows who is logged in and what they may change).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _page(
    request: Request,
    store: Store,
    admin: AdminRef,
    forms: dict[str, FormState] | None = None,
    status: int = 200,
) -> Response:
    context = _dashboard(request, store, admin, forms or {})
    return templates.TemplateResponse(
        request, "admin.html", context, status_code=status, headers=PAGE_HEADERS
    )


def _login(request: Request, message: str = "", status: int = 200) -> Response:
    context = {"message": message, "logged_out": request.query_params.get("uit") == "1"}
    return templates.TemplateResponse(
        request, "login.html", context, status_code=status, headers=PAGE_HEADERS
    )


def _back(code: str, item_id: int) -> Response:
    anchor = DONE[code][1]
    return RedirectResponse(f"/admin?klaar={code}&id={item_id}#{anchor}", status_code=303)


# ---------------------------------------------------------------------- routes


@router.get("")
async def admin_page(request: Request, bridge: BridgeDep) -> Response:
    """The admin page, or its login form."""
    store = bridge.store
    admin = await asyncio.to_thread(_session, request, store)
    if admin is None:
        return _login(request)
    return await asyncio.to_thread(_page, request, store, admin)


@router.get("/admin.css")
async def stylesheet() -> Response:
    """The page's stylesheet."""
    return FileResponse(HERE / "static" / "admin.css", media_type="text/css")


@router.post("/login")
async def login(request: Request, bridge: BridgeDep) -> Response:
    """Log in with an admin token; the session is a signed cookie with the admin's id."""
    form = await request.form()
    token = _text(form, "token")
    admin = await asyncio.to_thread(bridge.store.admin_for_token, token) if token else None
    if admin is None:
        return _login(request, "Onbekend of ingetrokken beheertoken.", 401)
    cookie = _signer(bridge.store).dumps({"a": admin.id})
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("admin %s logged in to the admin page", admin.id)
    return response


@router.post("/logout")
async def logout() -> Response:
    """Log out: the session cookie is dropped."""
    response = RedirectResponse("/admin?uit=1", status_code=303)
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


async def _form_admin(request: Request, store: Store) -> tuple[AdminRef, FormData] | Response:
    """The admin of the session and the posted form, or the response that refuses them."""
    form = await request.form()
    admin = await asyncio.to_thread(_session, request, store)
    if admin is None:
        return _login(request, "Je sessie is verlopen of je bent niet ingelogd; log in.", 401)
    if not _csrf_ok(request, store, form):
        stale = FormState(message="Het formulier was verouderd; probeer het nog eens.")
        return await asyncio.to_thread(_page, request, store, admin, {"page": stale}, 403)
    return admin, form


_ROUTE_LABELS = {
    "pc4": "PC4 of bereik",
    "wijk": "Wijk",
    "rank": "Rang",
    "provider": "Aanbieder",
    "valid_from": "Geldig vanaf",
    "valid_to": "Geldig tot",
}
_FULL_LABELS = {"provider": "Aanbieder", "team": "Team", "until": "Vol tot en met"}
_TEAM_LABELS = {"provider": "Aanbieder", "name": "Naam", "members": "Leden", "pc4": "PC4-gebieden"}


@router.post("/routes")
async def add_route(request: Request, bridge: BridgeDep) -> Response:
    """Add a route from the form."""
    return await _form_action(
        request, bridge, "route", _ROUTE_LABELS, _route_request, admin_api.add_route, "route-added"
    )


@router.post("/routes/{route_id}/remove")
async def remove_route(route_id: str, request: Request, bridge: BridgeDep) -> Response:
    """Remove a route (a button in the route table)."""
    return await _button_action(
        request,
        bridge,
        route_id,
        "route_id",
        admin_api.remove_route,
        "routes",
        "Route niet verwijderd",
        "route-removed",
    )


@router.post("/availability")
async def mark_full(request: Request, bridge: BridgeDep) -> Response:
    """Mark a provider or team full until a day (inclusive)."""
    return await _form_action(
        request, bridge, "full", _FULL_LABELS, _full_request, admin_api.mark_full, "full-added"
    )


@router.post("/availability/{block_id}/clear")
async def clear_full(block_id: str, request: Request, bridge: BridgeDep) -> Response:
    """Clear a "full" period (a button in the availability table)."""
    return await _button_action(
        request,
        bridge,
        block_id,
        "availability_id",
        admin_api.clear_full,
        "blocks",
        "Vol-melding niet opgeheven",
        "full-cleared",
    )


@router.post("/teams")
async def add_team(request: Request, bridge: BridgeDep) -> Response:
    """Add a team to a provider from the form."""
    return await _form_action(
        request,
        bridge,
        "team",
        _TEAM_LABELS,
        _team_request,
        admin_api.add_team,
        "team-added",
        multi=("care_types",),
    )


async def _form_action(
    request: Request,
    bridge: Bridge,
    key: str,
    labels: dict[str, str],
    parse: Callable[[Any, FormState], Any],
    act: Callable[[Store, AdminRef, Any], int],
    done: str,
    *,
    multi: tuple[str, ...] = (),
) -> Response:
    """A form that adds something: check the form, let the admin API do it within the
    admin's scope, and show the page again with the input kept and the problem beside its
    field, or go back to the section with a confirmation."""
    store = bridge.store
    guard = await _form_admin(request, store)
    if isinstance(guard, Response):
        return guard
    admin, form = guard
    state = FormState(_values(form, *multi))
    try:
        new_id = await asyncio.to_thread(act, store, admin, parse(form, state))
    except Invalid:
        return await asyncio.to_thread(_page, request, store, admin, {key: state}, 400)
    except WijkbrugError as exc:
        _refusal(state, exc, labels)
        return await asyncio.to_thread(_page, request, store, admin, {key: state}, exc.status)
    return _back(done, new_id)


async def _button_action(
    request: Request,
    bridge: Bridge,
    raw_id: str,
    field: str,
    act: Callable[[Store, AdminRef, int], object],
    section: str,
    failed: str,
    done: str,
) -> Response:
    """A button that removes something by id, within the admin's scope."""
    store = bridge.store
    guard = await _form_admin(request, store)
    if isinstance(guard, Response):
        return guard
    admin, _ = guard
    try:
        object_id = admin_api.object_id(raw_id, field)
        await asyncio.to_thread(act, store, admin, object_id)
    except WijkbrugError as exc:
        state = FormState(message=f"{failed}: {exc.message}")
        return await asyncio.to_thread(_page, request, store, admin, {section: state}, exc.status)
    return _back(done, object_id)
