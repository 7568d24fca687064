"""The region's directory and agreements in the database: organisations, teams,
practitioners, wijken, routes, availability, integration clients, and the record of every
change made to them (who, what, before, after).

:class:`Directory` is a part of :class:`bridge.store.Store` (a mixin over its sessions).
Routing itself is pure (:mod:`bridge.routing`); this module loads the tables into a
:class:`~bridge.routing.RoutingTable`, rebuilt only when the directory changed.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, time
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.audit import Access
from bridge.canonical import DIALECTS, CareType, Priority
from bridge.db import (
    AdminChange,
    AdminToken,
    Client,
    Meta,
    Organisation,
    Practitioner,
    Route,
    RoutingDecision,
    Team,
    TeamArea,
    TeamCareType,
    TeamMember,
    Unavailability,
    Wijk,
    WijkArea,
    utcnow,
)
from bridge.errors import ErrorCode, WijkbrugError
from bridge.identifiers import is_matrix_user_id, is_valid_agb, is_valid_ura
from bridge.routing import (
    OFFICE_CLOSES,
    OFFICE_OPENS,
    PC4_MAX,
    PC4_MIN,
    Decision,
    RouteRule,
    RoutingTable,
    TeamCoverage,
    office_hours,
)
from bridge.routing import Unavailability as Block
from bridge.secretbox import SecretBox
from bridge.trail import AuditTrail

ORG_KINDS = ("practice", "provider", "hap")
ADMIN_ROLES = ("region-admin", "wijk-coordinator", "org-admin")
VERSION_KEY = "directory_version"
# At most this many integration clients' tokens are remembered between directory changes.
CLIENT_CACHE_SIZE = 10_000
_META = cast(Table, Meta.__table__)
_VERSION_NOW = select(_META.c.value).where(_META.c.key == VERSION_KEY)


def normalise_fingerprint(value: str) -> str | None:
    """A SHA-256 fingerprint as 64 lowercase hex digits (colons and case as proxies and
    openssl print them are accepted); None if it is not one."""
    hexed = value.replace(":", "").strip().lower()
    if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
        return None
    return hexed


def decision_values(
    decision: Decision, priority: Priority, practice_id: int | None, case_id: int | None
) -> dict[str, Any]:
    """A routing decision's row as the admin page shows it (area and care type, no
    patient)."""
    return {
        "care_type": decision.care_type.value,
        "pc4": decision.pc4,
        "priority": priority.value,
        "provider_id": decision.provider_id,
        "practice_id": practice_id,
        "case_id": case_id,
        "reasons": list(decision.reasons),
    }


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OrgRef:
    """An organisation as the rest of the code sees it (no ORM object escapes)."""

    id: int
    kind: str
    name: str
    agb: str | None
    ura: str | None

    @property
    def code(self) -> str:
        return self.ura or self.agb or str(self.id)


@dataclass(frozen=True)
class ClientRef:
    id: int
    name: str
    dialect: str
    org: OrgRef
    # SHA-256 fingerprint (hex) of the client certificate it must present through the
    # proxy (``http.client_certificate_header``); None: a token is enough.
    cert_sha256: str | None = None


@dataclass(frozen=True)
class AdminRef:
    """Who is acting through the admin API or page, and what they may touch."""

    id: int
    name: str
    role: str
    scope: tuple[str, ...]  # wijk names (coordinator) or AGB/URA codes (org admin)

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


@dataclass(frozen=True)
class TeamRef:
    id: int
    name: str
    provider: OrgRef
    members: tuple[str, ...]
    care_types: tuple[CareType, ...]
    pc4_ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PractitionerRef:
    id: int
    name: str
    org: OrgRef
    agb: str | None
    uzi: str | None
    big: str | None
    matrix_id: str | None


@dataclass(frozen=True)
class RouteRow:
    """One line of a region's agreement sheet (``route import``)."""

    care_type: CareType
    provider_code: str
    rank: int = 1
    pc4_from: int | None = None
    pc4_to: int | None = None
    wijk: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


def org_ref(o: Organisation) -> OrgRef:
    return OrgRef(o.id, o.kind, o.name, o.agb, o.ura)


def parse_pc4_range(text: str) -> tuple[int, int]:
    """``"1091-1098"`` or ``"1092"`` -> (from, to), checked against 1000-9999."""
    low, _, high = text.strip().partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise WijkbrugError(ErrorCode.VALUE, f"pc4: {text!r} is not a PC4 or a range") from None
    if not (PC4_MIN <= start <= end <= PC4_MAX):
        raise WijkbrugError(
            ErrorCode.VALUE, f"pc4: {text!r} must be within 1000-9999 with from <= to"
        )
    return start, end


def _overlap(
    a_from: datetime | None, a_to: datetime | None, b_from: datetime | None, b_to: datetime | None
) -> bool:
    starts_before_b_ends = b_to is None or a_from is None or a_from < b_to
    ends_after_b_starts = a_to is None or b_from is None or b_from < a_to
    return starts_before_b_ends and ends_after_b_starts


class Directory(AuditTrail):
    """Directory and routing tables (part of the Store)."""

    _table_lock = threading.Lock()

    box: SecretBox  # provided by Store

    def session(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def read_connection(self) -> AbstractContextManager[Connection]:  # provided by Store
        raise NotImplementedError

    def read_constant(self, statement: Select[Any]) -> Any:  # provided by Store
        raise NotImplementedError

    _cached_table: tuple[int, RoutingTable] | None = None
    # Known tokens' clients at a directory version: (version, {token hash: (client,
    # expiry)}); replaced whole when the version moves (set by the Store).
    _client_cache: tuple[int, dict[str, tuple[ClientRef, datetime | None]]]
    # The region's GP office hours (config ``office_hours``; set when the store is opened).
    office: tuple[time, time] = (OFFICE_OPENS, OFFICE_CLOSES)

    # ------------------------------------------------------------------ change record

    def _changed(
        self, s: Session, actor: str, action: str, target: str, before: Any, after: Any
    ) -> None:
        """Record a change (and in the audit trail) and bump the directory version (routing
        tables rebuild)."""
        s.add(AdminChange(actor=actor, action=action, target=target, before=before, after=after))
        self._audit(s, Access(actor, None, "admin", "beheer"), f"admin.{action}", obj=target)
        row = s.get(Meta, VERSION_KEY)
        if row is None:
            s.add(Meta(key=VERSION_KEY, value=1))
        else:
            row.value = int(row.value) + 1

    def changes(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(AdminChange).order_by(AdminChange.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "before": r.before,
                    "after": r.after,
                    "at": r.at.isoformat(),
                }
                for r in rows
            ]

    # ------------------------------------------------------------------ organisations

    def add_org(
        self, kind: str, name: str, *, agb: str | None, ura: str | None, actor: str = "cli"
    ) -> OrgRef:
        if kind not in ORG_KINDS:
            raise WijkbrugError(ErrorCode.VALUE, f"kind must be one of {', '.join(ORG_KINDS)}")
        if agb is not None and not is_valid_agb(agb):
            raise WijkbrugError(ErrorCode.VALUE, "agb: an AGB code is 8 digits")
        if ura is not None and not is_valid_ura(ura):
            raise WijkbrugError(ErrorCode.VALUE, "ura: a URA number is 8 digits")
        if agb is None and ura is None:
            raise WijkbrugError(ErrorCode.REQUIRED, "an organisation needs an AGB or a URA")
        if not name.strip():
            raise WijkbrugError(ErrorCode.REQUIRED, "name: an organisation needs a name")
        try:
            with self.session() as s:
                org = Organisation(kind=kind, name=name.strip(), agb=agb, ura=ura)
                s.add(org)
                s.flush()
                after = {"kind": kind, "name": org.name, "agb": agb, "ura": ura}
                self._changed(s, actor, "org.add", f"organisation {org.id}", None, after)
                return org_ref(org)
        except IntegrityError:
            raise WijkbrugError(
                ErrorCode.CONFLICT, "an organisation with that AGB or URA exists already"
            ) from None

    def list_orgs(self, kind: str | None = None) -> list[OrgRef]:
        with self.session() as s:
            query = select(Organisation).order_by(Organisation.id)
            if kind:
                query = query.where(Organisation.kind == kind)
            return [org_ref(o) for o in s.scalars(query)]

    def find_org(self, code: str) -> OrgRef:
        """An organisation by AGB or URA."""
        with self.session() as s:
            org = s.scalar(
                select(Organisation).where(or_(Organisation.agb == code, Organisation.ura == code))
            )
            if org is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"no organisation with AGB/URA {code}")
            return org_ref(org)

    def _provider(self, code: str) -> OrgRef:
        provider = self.find_org(code)
        if provider.kind != "provider":
            raise WijkbrugError(ErrorCode.VALUE, f"{provider.name} is not a home-care provider")
        return provider

    # ------------------------------------------------------------------ teams

    def add_team(
        self,
        provider_code: str,
        name: str,
        members: Sequence[str],
        *,
        care_types: Sequence[CareType] = (),
        pc4_ranges: Sequence[tuple[int, int]] = (),
        actor: str = "cli",
    ) -> int:
        provider = self._provider(provider_code)
        bad = [m for m in members if not is_matrix_user_id(m)]
        if bad:
            raise WijkbrugError(ErrorCode.VALUE, f"member: not Matrix user IDs: {', '.join(bad)}")
        try:
            with self.session() as s:
                team = Team(provider_id=provider.id, name=name.strip())
                s.add(team)
                s.flush()
                for member in dict.fromkeys(members):
                    s.add(TeamMember(team_id=team.id, matrix_id=member))
                for care_type in dict.fromkeys(care_types):
                    s.add(TeamCareType(team_id=team.id, care_type=care_type.value))
                for low, high in pc4_ranges:
                    s.add(TeamArea(team_id=team.id, pc4_from=low, pc4_to=high))
                after = {
                    "provider": provider.code,
                    "name": name,
                    "members": list(members),
                    "care_types": [c.value for c in care_types],
                    "pc4": [f"{lo}-{hi}" for lo, hi in pc4_ranges],
                }
                self._changed(s, actor, "team.add", f"team {team.id}", None, after)
                return team.id
        except IntegrityError:
            raise WijkbrugError(
                ErrorCode.CONFLICT, f"{provider.name} has a team named {name!r} already"
            ) from None

    def list_teams(self) -> list[TeamRef]:
        with self.session() as s:
            return self._teams(s)

    def _teams(self, s: Session) -> list[TeamRef]:
        out = []
        rows = s.execute(
            select(Team, Organisation)
            .join(Organisation, Team.provider_id == Organisation.id)
            .order_by(Team.id)
        )
        for team, org in rows:
            members = s.scalars(
                select(TeamMember.matrix_id)
                .where(TeamMember.team_id == team.id)
                .order_by(TeamMember.matrix_id)
            )
            care = s.scalars(select(TeamCareType.care_type).where(TeamCareType.team_id == team.id))
            areas = s.execute(
                select(TeamArea.pc4_from, TeamArea.pc4_to).where(TeamArea.team_id == team.id)
            )
            out.append(
                TeamRef(
                    team.id,
                    team.name,
                    org_ref(org),
                    tuple(members),
                    tuple(sorted((CareType(c) for c in care), key=lambda c: c.value)),
                    tuple((int(lo), int(hi)) for lo, hi in areas),
                )
            )
        return out

    def team_members(self, team_id: int) -> list[str]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(TeamMember.matrix_id)
                    .where(TeamMember.team_id == team_id)
                    .order_by(TeamMember.matrix_id)
                )
            )

    def organisation_of_member(self, matrix_id: str) -> OrgRef | None:
        with self.session() as s:
            org = s.scalar(
                select(Organisation)
                .join(Team, Team.provider_id == Organisation.id)
                .join(TeamMember, TeamMember.team_id == Team.id)
                .where(TeamMember.matrix_id == matrix_id)
            )
            return org_ref(org) if org else None

    # ------------------------------------------------------------------ practitioners

    def add_practitioner(
        self,
        org_code: str,
        name: str,
        *,
        agb: str | None = None,
        uzi: str | None = None,
        big: str | None = None,
        matrix_id: str | None = None,
        actor: str = "cli",
    ) -> int:
        org = self.find_org(org_code)
        if agb is not None and not is_valid_agb(agb):
            raise WijkbrugError(ErrorCode.VALUE, "agb: an AGB code is 8 digits")
        if matrix_id is not None and not is_matrix_user_id(matrix_id):
            raise WijkbrugError(ErrorCode.VALUE, f"matrix-id: {matrix_id!r} is not a Matrix ID")
        if not (agb or uzi or big):
            raise WijkbrugError(ErrorCode.REQUIRED, "a practitioner needs an AGB, UZI or BIG")
        try:
            with self.session() as s:
                p = Practitioner(
                    org_id=org.id, name=name, agb=agb, uzi=uzi, big=big, matrix_id=matrix_id
                )
                s.add(p)
                s.flush()
                after = {"org": org.code, "name": name, "agb": agb, "matrix_id": matrix_id}
                self._changed(s, actor, "practitioner.add", f"practitioner {p.id}", None, after)
                return p.id
        except IntegrityError:
            raise WijkbrugError(
                ErrorCode.CONFLICT, "a practitioner with that AGB or Matrix ID exists already"
            ) from None

    def practitioner_by_matrix_id(self, matrix_id: str) -> PractitionerRef | None:
        """The practitioner who chats as ``matrix_id``, if the directory knows her."""
        with self.session() as s:
            row = s.execute(
                select(Practitioner, Organisation)
                .join(Organisation, Practitioner.org_id == Organisation.id)
                .where(Practitioner.matrix_id == matrix_id)
            ).first()
            if row is None:
                return None
            p, o = row
            return PractitionerRef(p.id, p.name, org_ref(o), p.agb, p.uzi, p.big, p.matrix_id)

    def list_practitioners(self) -> list[PractitionerRef]:
        with self.session() as s:
            rows = s.execute(
                select(Practitioner, Organisation)
                .join(Organisation, Practitioner.org_id == Organisation.id)
                .order_by(Practitioner.id)
            )
            return [
                PractitionerRef(p.id, p.name, org_ref(o), p.agb, p.uzi, p.big, p.matrix_id)
                for p, o in rows
            ]

    # ------------------------------------------------------------------ wijken

    def add_wijk(self, name: str, pc4_ranges: Sequence[tuple[int, int]], actor: str = "cli") -> int:
        areas = sorted({a for lo, hi in pc4_ranges for a in range(lo, hi + 1)})
        if not name.strip() or not areas:
            raise WijkbrugError(ErrorCode.REQUIRED, "a wijk needs a name and at least one PC4")
        try:
            with self.session() as s:
                wijk = Wijk(name=name.strip())
                s.add(wijk)
                s.flush()
                for area in areas:
                    s.add(WijkArea(wijk_id=wijk.id, pc4=area))
                self._changed(s, actor, "wijk.add", f"wijk {wijk.name}", None, {"pc4": areas})
                return wijk.id
        except IntegrityError:
            raise WijkbrugError(ErrorCode.CONFLICT, f"wijk {name!r} exists already") from None

    def wijken(self) -> dict[str, list[int]]:
        with self.session() as s:
            out: dict[str, list[int]] = {}
            for name, area in s.execute(
                select(Wijk.name, WijkArea.pc4)
                .join(WijkArea, WijkArea.wijk_id == Wijk.id)
                .order_by(Wijk.name, WijkArea.pc4)
            ):
                out.setdefault(name, []).append(int(area))
            return out

    # ------------------------------------------------------------------ routes

    def add_route(
        self,
        care_type: CareType,
        pc4_from: int | None,
        pc4_to: int | None,
        provider_code: str,
        *,
        rank: int = 1,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        wijk: str | None = None,
        actor: str = "cli",
    ) -> int:
        row = RouteRow(care_type, provider_code, rank, pc4_from, pc4_to, wijk, valid_from, valid_to)
        with self.session() as s:
            return self._add_route(s, row, actor)

    def _add_route(self, s: Session, row: RouteRow, actor: str) -> int:
        """Check and add one route inside an open transaction."""
        if row.rank < 1:
            raise WijkbrugError(ErrorCode.VALUE, "rank: must be 1 (preferred) or higher")
        if row.valid_from and row.valid_to and row.valid_to <= row.valid_from:
            raise WijkbrugError(ErrorCode.VALUE, "valid_to: must be after valid_from")
        provider = s.scalar(
            select(Organisation).where(
                or_(Organisation.ura == row.provider_code, Organisation.agb == row.provider_code)
            )
        )
        if provider is None:
            raise WijkbrugError(ErrorCode.NOT_FOUND, f"provider: unknown URA {row.provider_code}")
        if provider.kind != "provider":
            raise WijkbrugError(
                ErrorCode.VALUE, f"provider: {provider.name} is not a home-care provider"
            )
        wijk_id: int | None = None
        if row.wijk:
            wijk_obj = s.scalar(select(Wijk).where(Wijk.name == row.wijk))
            if wijk_obj is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"wijk: unknown wijk {row.wijk!r}")
            wijk_id = wijk_obj.id
            areas = set(s.scalars(select(WijkArea.pc4).where(WijkArea.wijk_id == wijk_id)))
            low, high = min(areas), max(areas)
        else:
            if row.pc4_from is None:
                raise WijkbrugError(ErrorCode.REQUIRED, "pc4: give a PC4 range or a wijk")
            low, high = row.pc4_from, row.pc4_to if row.pc4_to is not None else row.pc4_from
            if not (PC4_MIN <= low <= high <= PC4_MAX):
                raise WijkbrugError(
                    ErrorCode.VALUE, f"pc4: {low}-{high} must be within 1000-9999, from <= to"
                )
            areas = set(range(low, high + 1))
        clash = self._clashing_route(s, row, provider.id, areas)
        if clash is not None:
            raise WijkbrugError(
                ErrorCode.CONFLICT,
                f"rank: route #{clash} already gives {row.care_type.value} rank {row.rank} in an "
                "overlapping area and period; use another rank or end that route first",
            )
        route = Route(
            care_type=row.care_type.value,
            pc4_from=low,
            pc4_to=high,
            provider_id=provider.id,
            rank=row.rank,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            wijk_id=wijk_id,
        )
        s.add(route)
        s.flush()
        after = {
            "care_type": row.care_type.value,
            "area": f"wijk {row.wijk}" if row.wijk else f"{low}-{high}",
            "provider": provider.ura or provider.agb,
            "rank": row.rank,
            "valid_from": row.valid_from.isoformat() if row.valid_from else None,
            "valid_to": row.valid_to.isoformat() if row.valid_to else None,
        }
        self._changed(s, actor, "route.add", f"route {route.id}", None, after)
        return route.id

    def _clashing_route(
        self, s: Session, row: RouteRow, provider_id: int, areas: set[int]
    ) -> int | None:
        """An existing route with the same care type and rank over an overlapping area and
        period (two "preferred" providers for one place would make routing arbitrary)."""
        for other in self._rules(s):
            if other.care_type is not row.care_type or other.rank != row.rank:
                continue
            if not _overlap(other.valid_from, other.valid_to, row.valid_from, row.valid_to):
                continue
            if any(other.covers(a) for a in areas):
                return other.id
        return None

    def end_route(self, route_id: int, valid_to: datetime, actor: str = "cli") -> None:
        """Let a route stop applying at ``valid_to`` (its history stays)."""
        with self.session() as s:
            route = s.get(Route, route_id)
            if route is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"no route #{route_id}")
            if route.valid_from is not None and valid_to <= route.valid_from:
                raise WijkbrugError(ErrorCode.VALUE, "valid_to: must be after the route starts")
            before = route.valid_to.isoformat() if route.valid_to else None
            route.valid_to = valid_to
            self._changed(
                s,
                actor,
                "route.end",
                f"route {route_id}",
                {"valid_to": before},
                {"valid_to": valid_to.isoformat()},
            )

    def remove_route(self, route_id: int, actor: str = "cli") -> None:
        with self.session() as s:
            route = s.get(Route, route_id)
            if route is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"no route #{route_id}")
            before = {
                "care_type": route.care_type,
                "area": f"{route.pc4_from}-{route.pc4_to}",
                "provider_id": route.provider_id,
                "rank": route.rank,
            }
            s.delete(route)
            self._changed(s, actor, "route.remove", f"route {route_id}", before, None)

    def import_routes(
        self,
        rows: Sequence[tuple[int, RouteRow]],
        actor: str = "cli",
        progress: Any = None,
        sheet_errors: Sequence[tuple[int, str]] = (),
    ) -> int:
        """Add the routes of an agreement sheet in one transaction; a row that is already
        there is skipped (re-import is a no-op). Any bad row (including ``sheet_errors``
        found while parsing): nothing changes, and the error lists every bad row by its
        line number. Returns how many routes were added."""
        errors = list(sheet_errors)
        added = 0
        s: Session
        with self.session() as s:
            existing = {self._row_key(r) for r in self._rules(s)}
            for line, row in rows:
                if progress is not None:
                    progress(1)
                key = (
                    row.care_type,
                    row.wijk or (row.pc4_from, row.pc4_to),
                    row.provider_code,
                    row.rank,
                    row.valid_from,
                    row.valid_to,
                )
                if key in existing:
                    continue
                try:
                    with s.begin_nested():
                        self._add_route(s, row, actor)
                    existing.add(key)
                    added += 1
                except WijkbrugError as exc:
                    errors.append((line, f"line {line}: {exc.message}"))
            if errors:
                s.rollback()
                lines = [text for _, text in sorted(errors)]
                raise WijkbrugError(
                    ErrorCode.VALUE,
                    f"{len(lines)} bad row(s), nothing imported:\n" + "\n".join(lines),
                    details={"errors": lines},
                )
        return added

    def _row_key(self, rule: RouteRule) -> tuple[Any, ...]:
        provider = rule.provider_code
        area: Any = rule.wijk or (rule.pc4_from, rule.pc4_to)
        return (rule.care_type, area, provider, rule.rank, rule.valid_from, rule.valid_to)

    def _rules(self, s: Session) -> list[RouteRule]:
        wijk_areas: dict[int, set[int]] = {}
        wijk_names: dict[int, str] = {}
        for wid, name, area in s.execute(
            select(Wijk.id, Wijk.name, WijkArea.pc4).join(WijkArea, WijkArea.wijk_id == Wijk.id)
        ):
            wijk_areas.setdefault(wid, set()).add(int(area))
            wijk_names[wid] = name
        rows = s.execute(
            select(Route, Organisation).join(Organisation, Route.provider_id == Organisation.id)
        )
        return [
            RouteRule(
                id=r.id,
                care_type=CareType(r.care_type),
                pc4_from=r.pc4_from,
                pc4_to=r.pc4_to,
                provider_id=r.provider_id,
                provider_name=o.name,
                rank=r.rank,
                valid_from=r.valid_from,
                valid_to=r.valid_to,
                wijk=wijk_names.get(r.wijk_id) if r.wijk_id else None,
                pc4s=frozenset(wijk_areas.get(r.wijk_id, ())) if r.wijk_id else frozenset(),
                provider_code=o.ura or o.agb or "",
            )
            for r, o in rows
        ]

    def route_rules(self) -> list[RouteRule]:
        with self.session() as s:
            return self._rules(s)

    # ------------------------------------------------------------------ availability

    def add_unavailability(
        self,
        provider_code: str,
        start: datetime,
        end: datetime,
        *,
        care_type: CareType | None = None,
        team: str | None = None,
        note: str = "",
        actor: str = "cli",
    ) -> int:
        provider = self._provider(provider_code)
        if end <= start:
            raise WijkbrugError(ErrorCode.VALUE, "until: must be after from")
        with self.session() as s:
            team_id = None
            if team is not None:
                team_id = s.scalar(
                    select(Team.id).where(Team.provider_id == provider.id, Team.name == team)
                )
                if team_id is None:
                    raise WijkbrugError(
                        ErrorCode.NOT_FOUND, f"team: {provider.name} has no {team!r}"
                    )
            block = Unavailability(
                provider_id=provider.id,
                team_id=team_id,
                care_type=care_type.value if care_type else None,
                start=start,
                end=end,
                note=note,
            )
            s.add(block)
            s.flush()
            after = {
                "provider": provider.code,
                "team": team,
                "care_type": care_type.value if care_type else None,
                "from": start.isoformat(),
                "until": end.isoformat(),
                "note": note,
            }
            self._changed(s, actor, "availability.full", f"unavailability {block.id}", None, after)
            return block.id

    def remove_unavailability(self, block_id: int, actor: str = "cli") -> None:
        with self.session() as s:
            n = s.execute(delete(Unavailability).where(Unavailability.id == block_id))
            if not getattr(n, "rowcount", 0):
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"no unavailability #{block_id}")
            self._changed(s, actor, "availability.open", f"unavailability {block_id}", None, None)

    def _blocks(self, s: Session) -> list[Block]:
        return [
            Block(
                id=b.id,
                provider_id=b.provider_id,
                start=b.start,
                end=b.end,
                care_type=CareType(b.care_type) if b.care_type else None,
                team_id=b.team_id,
                note=b.note,
            )
            for b in s.scalars(select(Unavailability).order_by(Unavailability.id))
        ]

    def unavailability(self) -> list[Block]:
        with self.session() as s:
            return self._blocks(s)

    # ------------------------------------------------------------------ routing

    def _version(self, s: Session) -> int:
        row = s.get(Meta, VERSION_KEY)
        return int(row.value) if row else 0

    def directory_version(self) -> int:
        """The directory's version now: every admin change bumps it (one indexed read,
        straight on the database driver; what the caches of the hot paths check against,
        at every request)."""
        value = self.read_constant(_VERSION_NOW)
        return int(value) if value is not None else 0

    def routing_table(self) -> RoutingTable:
        """The routing index of the current tables (rebuilt only after a change)."""
        cached = self._cached_table
        if cached is not None and cached[0] == self.directory_version():
            return cached[1]
        with self.reading() as s:
            version = self._version(s)
            teams = [
                TeamCoverage(t.id, t.provider.id, t.name, frozenset(t.care_types), t.pc4_ranges)
                for t in self._teams(s)
            ]
            table = RoutingTable(self._rules(s), teams, self._blocks(s))
        with self._table_lock:
            self._cached_table = (version, table)
        return table

    def decide(
        self,
        care_type: CareType,
        postcode: str,
        at: datetime | None = None,
        priority: Priority = Priority.ROUTINE,
    ) -> Decision:
        """Route a case with the tables as they are now (admin changes apply at once)."""
        return self.routing_table().route_for(care_type, postcode, at or utcnow(), priority)

    def explain(
        self,
        care_type: CareType,
        postcode: str,
        at: datetime | None = None,
        priority: Priority = Priority.ROUTINE,
    ) -> Decision:
        """:meth:`decide`, plus what that moment means for the way back: in office hours
        the nurse answers the practice, outside them the huisartsenpost hears it too."""
        moment = at or utcnow()
        decision = self.decide(care_type, postcode, moment, priority)
        open_now, why = office_hours(moment, *self.office)
        way_back = (
            "the nurse's answers go to the practice"
            if open_now
            else "the nurse's answers also go to the huisartsenpost"
        )
        return replace(decision, reasons=(*decision.reasons, f"{why}: {way_back}"))

    def known_areas(self) -> list[int]:
        """The PC4s the region's agreements mention (routes, wijken, team areas)."""
        with self.session() as s:
            areas: set[int] = set(s.scalars(select(WijkArea.pc4)))
            for lo, hi in s.execute(select(Route.pc4_from, Route.pc4_to)):
                areas.update(range(lo, hi + 1))
            for lo, hi in s.execute(select(TeamArea.pc4_from, TeamArea.pc4_to)):
                areas.update(range(lo, hi + 1))
            return sorted(areas)

    # ------------------------------------------------------------------ clients

    def add_client(
        self,
        org_code: str,
        name: str,
        dialect: str = "fhir-r4",
        actor: str = "cli",
        *,
        push_url: str | None = None,
        push_token: str | None = None,
        expires_at: datetime | None = None,
        cert_sha256: str | None = None,
    ) -> tuple[int, str]:
        """Register an integration client; returns its id and token (shown once).

        With ``push_url``, replies are POSTed there in the client's dialect (with
        ``push_token`` as bearer token, stored encrypted). The token stops working at
        ``expires_at`` (None: only when revoked)."""
        if dialect not in DIALECTS:
            raise WijkbrugError(ErrorCode.VALUE, f"dialect: one of {', '.join(DIALECTS)}")
        if push_url is not None and not push_url.startswith(("http://", "https://")):
            raise WijkbrugError(ErrorCode.VALUE, "push-url: must be an http(s) URL")
        if cert_sha256 is not None:
            cert_sha256 = normalise_fingerprint(cert_sha256)
            if cert_sha256 is None:
                raise WijkbrugError(
                    ErrorCode.VALUE, "cert-sha256: the certificate's SHA-256, 64 hex digits"
                )
        org = self.find_org(org_code)
        token = "wbt_" + secrets.token_urlsafe(32)
        with self.session() as s:
            client = Client(
                org_id=org.id,
                name=name,
                dialect=dialect,
                token_hash=hash_token(token),
                push_url=push_url,
                expires_at=expires_at,
                cert_sha256=cert_sha256,
            )
            s.add(client)
            s.flush()
            if push_token:
                client.push_token_enc = self.box.seal(
                    push_token.encode(), f"clients:push_token:{client.id}"
                )
            after = {"org": org.code, "name": name, "dialect": dialect, "push_url": push_url}
            self._changed(s, actor, "client.add", f"client {client.id}", None, after)
            return client.id, token

    def list_clients(self) -> list[tuple[ClientRef, bool, datetime | None]]:
        """Every integration client, whether it is revoked, and when its token expires
        (never the token itself)."""
        with self.session() as s:
            rows = s.execute(
                select(Client, Organisation)
                .join(Organisation, Client.org_id == Organisation.id)
                .order_by(Client.id)
            )
            return [
                (
                    ClientRef(c.id, c.name, c.dialect, org_ref(o)),
                    c.revoked_at is not None,
                    c.expires_at,
                )
                for c, o in rows
            ]

    def renew_client_token(
        self, client_id: int, expires_at: datetime | None, actor: str = "cli"
    ) -> str:
        """A new token for a client (the old one stops working at once); returns it, shown
        once. The client keeps its id, dialect, push endpoint and messages."""
        token = "wbt_" + secrets.token_urlsafe(32)
        with self.session() as s:
            client = s.get(Client, client_id)
            if client is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"no client #{client_id}")
            if client.revoked_at is not None:
                raise WijkbrugError(ErrorCode.CONFLICT, f"client #{client_id} is revoked")
            before = {"expires_at": client.expires_at.isoformat() if client.expires_at else None}
            client.token_hash = hash_token(token)
            client.expires_at = expires_at
            after = {"expires_at": expires_at.isoformat() if expires_at else None}
            self._changed(s, actor, "client.renew", f"client #{client_id}", before, after)
        return token

    def revoke_client(self, client_id: int, actor: str = "cli") -> None:
        """Its token stops working at once; its messages stay."""
        with self.session() as s:
            client = s.get(Client, client_id)
            if client is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, f"no client #{client_id}")
            if client.revoked_at is None:
                client.revoked_at = utcnow()
                self._changed(s, actor, "client.revoke", f"client {client_id}", None, None)

    def client_for_token(self, token: str) -> ClientRef | None:
        """The integration client of a token (None: unknown or revoked; an expired one is
        refused with the date). Every request asks, so a known token is answered from a
        cache that holds only while the directory version is unchanged: a revocation or
        renewal (an admin change, in any process) applies at the next request."""
        # Looking up the SHA-256 of the token leaks nothing about the token through timing.
        token_hash = hash_token(token)
        version = self.directory_version()
        cache = self._client_cache
        if cache[0] != version:
            cache = self._client_cache = (version, {})
        found = cache[1].get(token_hash)
        if found is None:
            with self.reading() as s:
                row = s.execute(
                    select(Client, Organisation)
                    .join(Organisation, Client.org_id == Organisation.id)
                    .where(Client.token_hash == token_hash, Client.revoked_at.is_(None))
                ).first()
                if row is None:
                    return None  # unknown tokens are not cached: anyone can send those
                client, org = row
                ref = ClientRef(
                    client.id, client.name, client.dialect, org_ref(org), client.cert_sha256
                )
                found = (ref, client.expires_at)
            if len(cache[1]) < CLIENT_CACHE_SIZE:
                cache[1][token_hash] = found
        ref, expires_at = found
        if expires_at is not None and expires_at <= utcnow():
            raise WijkbrugError(
                ErrorCode.UNAUTHORIZED,
                f"this token expired on {expires_at:%Y-%m-%d}; the region's "
                "admin can give the client a new one",
            )
        return ref

    # ------------------------------------------------------------------ admins

    def add_admin_token(
        self, name: str, role: str, scope: Sequence[str] = (), actor: str = "cli"
    ) -> tuple[int, str]:
        """A new admin credential; returns its id and token (shown once)."""
        if role not in ADMIN_ROLES:
            raise WijkbrugError(ErrorCode.VALUE, f"role: one of {', '.join(ADMIN_ROLES)}")
        if role != "region-admin" and not scope:
            raise WijkbrugError(
                ErrorCode.REQUIRED, f"scope: a {role} needs the wijken or organisation it manages"
            )
        token = "wba_" + secrets.token_urlsafe(32)
        with self.session() as s:
            row = AdminToken(name=name, role=role, scope=list(scope), token_hash=hash_token(token))
            s.add(row)
            s.flush()
            after = {"name": name, "role": role, "scope": list(scope)}
            self._changed(s, actor, "admin.add", f"admin {row.id}", None, after)
            return row.id, token

    def admin_for_token(self, token: str) -> AdminRef | None:
        with self.session() as s:
            row = s.scalar(
                select(AdminToken).where(
                    AdminToken.token_hash == hash_token(token), AdminToken.revoked_at.is_(None)
                )
            )
            if row is None:
                return None
            return AdminRef(row.id, row.name, row.role, tuple(row.scope or ()))

    def admin_by_id(self, admin_id: int) -> AdminRef | None:
        with self.session() as s:
            row = s.get(AdminToken, admin_id)
            if row is None or row.revoked_at is not None:
                return None
            return AdminRef(row.id, row.name, row.role, tuple(row.scope or ()))

    def record_denied(self, admin: AdminRef, action: str, target: str, why: str) -> None:
        """A refused admin action is recorded too (who tried what, outside their scope)."""
        with self.session() as s:
            s.add(
                AdminChange(
                    actor=admin.actor,
                    action=f"denied:{action}",
                    target=target,
                    before=None,
                    after={"reason": why},
                )
            )

    # ------------------------------------------------------------------ decisions

    def record_decision(
        self,
        decision: Decision,
        priority: Priority,
        practice_id: int | None,
        case_id: int | None = None,
    ) -> None:
        """Keep a routing decision for the admin page (area and care type, no patient)."""
        with self.session() as s:
            s.add(RoutingDecision(**decision_values(decision, priority, practice_id, case_id)))

    def recent_decisions(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.execute(
                select(RoutingDecision, Organisation.name)
                .outerjoin(Organisation, RoutingDecision.provider_id == Organisation.id)
                .order_by(RoutingDecision.id.desc())
                .limit(limit)
            )
            return [
                {
                    "at": d.at.isoformat(),
                    "care_type": d.care_type,
                    "pc4": d.pc4,
                    "priority": d.priority,
                    "provider": name,
                    "routed": d.provider_id is not None,
                    "reasons": d.reasons,
                }
                for d, name in rows
            ]

    # ---- policy helpers

    def is_registered_user(self, matrix_id: str) -> bool:
        """Whether ``matrix_id`` is a provider team's member or a practitioner (practice,
        huisartsenpost): the people the homeserver lets into case rooms besides the bridge."""
        with self.session() as s:
            member = s.scalar(
                select(TeamMember.team_id).where(TeamMember.matrix_id == matrix_id).limit(1)
            )
            if member is not None:
                return True
            practitioner = s.scalar(
                select(Practitioner.id).where(Practitioner.matrix_id == matrix_id).limit(1)
            )
            return practitioner is not None
