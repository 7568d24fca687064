"""Who may change what in the region's agreements: the admin roles as pure rules.

    region-admin       everything
    wijk-coordinator   add/remove routes whose area lies entirely within their wijken
    org-admin          add teams, mark availability, for their own organisation (AGB/URA)

Every admin may read everything (the directory and routes hold no patient data). A
verdict says whether an action is allowed and, when it is not, why, in words the admin
API and the admin page show as they are (``<field>: what is wrong``) and the change
record keeps. No I/O here: the caller hands in the wijken (name -> PC4s).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

REGION_ADMIN, WIJK_COORDINATOR, ORG_ADMIN = "region-admin", "wijk-coordinator", "org-admin"

ROLE_LABELS = {
    REGION_ADMIN: "regiobeheerder",
    WIJK_COORDINATOR: "wijkcoördinator",
    ORG_ADMIN: "organisatiebeheerder",
}


class Admin(Protocol):
    """What the rules need to know about an admin (``bridge.directory.AdminRef`` fits)."""

    @property
    def role(self) -> str: ...

    @property
    def scope(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class RouteArea:
    """The area of a route: a named wijk, or a PC4 range."""

    wijk: str | None = None
    pc4_from: int | None = None
    pc4_to: int | None = None

    def pc4s(self, wijken: Mapping[str, Sequence[int]]) -> set[int]:
        if self.wijk is not None:
            return set(wijken.get(self.wijk, ()))
        if self.pc4_from is None:
            return set()
        return set(range(self.pc4_from, (self.pc4_to or self.pc4_from) + 1))

    def text(self) -> str:
        if self.wijk is not None:
            return f"wijk {self.wijk}"
        if self.pc4_to is None or self.pc4_to == self.pc4_from:
            return f"PC4 {self.pc4_from}"
        return f"PC4 {self.pc4_from}-{self.pc4_to}"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""  # why not, when refused: "<field>: what is wrong" (API, change record)
    reason_nl: str = ""  # the same for the Dutch admin page
    problems: tuple[str, ...] = ()  # one line per refused row of a sheet


ALLOWED = Verdict(True)


def pc4_ranges(areas: Iterable[int]) -> str:
    """``[1091, 1092, 1093, 1095]`` -> ``"1091-1093, 1095"`` (for short messages)."""
    out: list[str] = []
    run: list[int] = []
    for area in sorted(areas):
        if run and area == run[-1] + 1:
            run.append(area)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [area]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _role(admin: Admin) -> str:
    return ROLE_LABELS.get(admin.role, admin.role)


def scope_pc4s(admin: Admin, wijken: Mapping[str, Sequence[int]]) -> set[int]:
    """The PC4s of the wijken a coordinator manages (unknown wijk names add nothing)."""
    return {area for name in admin.scope for area in wijken.get(name, ())}


def may_edit_route(admin: Admin, area: RouteArea, wijken: Mapping[str, Sequence[int]]) -> Verdict:
    """Whether ``admin`` may add or remove a route over ``area``: a region admin always, a
    wijk coordinator when every PC4 of the area lies in the wijken of their scope."""
    if admin.role == REGION_ADMIN:
        return ALLOWED
    if admin.role != WIJK_COORDINATOR:
        return Verdict(
            False,
            f"role: a {admin.role} cannot change routes",
            f"rol: een {_role(admin)} kan geen routes wijzigen",
        )
    if area.wijk is not None and area.wijk in admin.scope:
        return ALLOWED
    areas = area.pc4s(wijken)
    mine = ", ".join(admin.scope)
    if area.wijk is not None and not areas:
        return Verdict(
            False,
            f"wijk: {area.wijk!r} is not one of your wijken ({mine})",
            f"wijk: ‘{area.wijk}’ is niet een van jouw wijken ({mine})",
        )
    outside = pc4_ranges(areas - scope_pc4s(admin, wijken))
    if not outside:
        return ALLOWED
    field = "wijk" if area.wijk is not None else "pc4"
    return Verdict(
        False,
        f"{field}: {area.text()} lies outside your wijken ({mine}): {outside}",
        f"{field}: {area.text()} ligt buiten jouw wijken ({mine}): {outside}",
    )


def may_import_routes(
    admin: Admin, rows: Sequence[tuple[int, RouteArea]], wijken: Mapping[str, Sequence[int]]
) -> Verdict:
    """An agreement sheet may be loaded if the admin may add every one of its rows."""
    if admin.role != WIJK_COORDINATOR:
        return may_edit_route(admin, RouteArea(), wijken)  # everything, or nothing
    refused = [(line, may_edit_route(admin, area, wijken)) for line, area in rows]
    bad = [f"line {line}: {v.reason}" for line, v in refused if not v.allowed]
    if not bad:
        return ALLOWED
    return Verdict(
        False,
        f"sheet: {len(bad)} row(s) outside your wijken",
        f"blad: {len(bad)} regel(s) buiten jouw wijken",
        tuple(bad),
    )


def may_manage_org(
    admin: Admin, codes: Iterable[str | None], *, field: str = "provider"
) -> Verdict:
    """Whether ``admin`` may add teams to, or mark availability of, the organisation with
    these ``codes`` (its AGB and/or URA): a region admin always, an organisation admin
    for the organisation of their scope."""
    if admin.role == REGION_ADMIN:
        return ALLOWED
    if admin.role != ORG_ADMIN:
        return Verdict(
            False,
            f"role: a {admin.role} cannot change teams or availability",
            f"rol: een {_role(admin)} kan geen teams of beschikbaarheid wijzigen",
        )
    known = [c for c in codes if c]
    if any(code in admin.scope for code in known):
        return ALLOWED
    name = known[0] if known else "?"
    mine = ", ".join(admin.scope)
    return Verdict(
        False,
        f"{field}: {name} is not your organisation ({mine})",
        f"{field}: {name} is niet jouw organisatie ({mine})",
    )


def may_edit_routes_at_all(admin: Admin) -> bool:
    """Whether the admin has any route rights (the page shows the route form only then)."""
    return admin.role in (REGION_ADMIN, WIJK_COORDINATOR)


def manages_orgs_at_all(admin: Admin) -> bool:
    """Whether the admin has any team or availability rights."""
    return admin.role in (REGION_ADMIN, ORG_ADMIN)
