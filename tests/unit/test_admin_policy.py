"""The admin roles as pure rules: who may change which routes, teams and availability."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bridge.admin_policy import (
    RouteArea,
    manages_orgs_at_all,
    may_edit_route,
    may_edit_routes_at_all,
    may_import_routes,
    may_manage_org,
    scope_pc4s,
)

WIJKEN: dict[str, list[int]] = {
    "Oost": [1091, 1092, 1093, 1094],
    "Watergraafsmeer": [1095, 1096, 1097, 1098],
    "Zuid": [1071, 1072, 1074],  # not contiguous: 1073 belongs to no wijk
}


@dataclass(frozen=True)
class Admin:
    role: str
    scope: tuple[str, ...] = ()


REGION = Admin("region-admin")
OOST = Admin("wijk-coordinator", ("Oost",))
OOST_AND_ZUID = Admin("wijk-coordinator", ("Oost", "Zuid"))
THUISZORG = Admin("org-admin", ("12345678",))


def pc4(low: int, high: int | None = None) -> RouteArea:
    return RouteArea(None, low, high if high is not None else low)


def test_region_admin_may_do_everything() -> None:
    assert may_edit_route(REGION, pc4(1000, 9999), WIJKEN).allowed
    assert may_edit_route(REGION, RouteArea("Nergens"), WIJKEN).allowed
    assert may_import_routes(REGION, [(2, pc4(1011))], WIJKEN).allowed
    assert may_manage_org(REGION, ("87654321", None)).allowed
    assert may_edit_routes_at_all(REGION) and manages_orgs_at_all(REGION)


@pytest.mark.parametrize(
    ("area", "allowed"),
    [
        (RouteArea("Oost"), True),  # a wijk of their scope, by name
        (pc4(1091, 1094), True),  # exactly their wijk
        (pc4(1092), True),  # one PC4 inside it
        (pc4(1093, 1094), True),
        (pc4(1091, 1095), False),  # one PC4 over the edge
        (pc4(1090, 1091), False),
        (RouteArea("Watergraafsmeer"), False),  # someone else's wijk
        (RouteArea("Nergens"), False),  # unknown wijk, not in scope
        (pc4(5000), False),
    ],
)
def test_coordinator_edits_routes_only_within_their_wijken(area: RouteArea, allowed: bool) -> None:
    verdict = may_edit_route(OOST, area, WIJKEN)
    assert verdict.allowed is allowed
    if not allowed:
        field = "wijk" if area.wijk else "pc4"
        assert verdict.reason.startswith(f"{field}: ")
        assert verdict.reason_nl.startswith(f"{field}: ")
        assert "Oost" in verdict.reason


def test_refusal_names_the_pc4s_outside_the_scope() -> None:
    verdict = may_edit_route(OOST, pc4(1090, 1097), WIJKEN)
    assert verdict.reason == ("pc4: PC4 1090-1097 lies outside your wijken (Oost): 1090, 1095-1097")
    assert "ligt buiten jouw wijken" in verdict.reason_nl


def test_coordinator_with_two_wijken_gets_their_union_but_not_the_holes() -> None:
    assert scope_pc4s(OOST_AND_ZUID, WIJKEN) == {1091, 1092, 1093, 1094, 1071, 1072, 1074}
    assert may_edit_route(OOST_AND_ZUID, pc4(1071, 1072), WIJKEN).allowed
    assert may_edit_route(OOST_AND_ZUID, RouteArea("Zuid"), WIJKEN).allowed
    # 1073 lies between their PC4s but in none of their wijken.
    assert not may_edit_route(OOST_AND_ZUID, pc4(1072, 1074), WIJKEN).allowed


def test_a_wijk_outside_the_scope_whose_pc4s_all_are_inside_is_allowed() -> None:
    wijken = {**WIJKEN, "Oost-Noord": [1091, 1092]}
    assert may_edit_route(OOST, RouteArea("Oost-Noord"), wijken).allowed


def test_a_coordinator_whose_wijk_does_not_exist_may_change_nothing_by_pc4() -> None:
    ghost = Admin("wijk-coordinator", ("Verdwenen",))
    assert not may_edit_route(ghost, pc4(1091), WIJKEN).allowed
    # ...but a route by the name of their wijk is theirs (the store refuses the unknown wijk).
    assert may_edit_route(ghost, RouteArea("Verdwenen"), WIJKEN).allowed


def test_org_admin_may_not_change_routes() -> None:
    verdict = may_edit_route(THUISZORG, pc4(1091), WIJKEN)
    assert not verdict.allowed and verdict.reason.startswith("role: ")
    assert not may_import_routes(THUISZORG, [], WIJKEN).allowed
    assert not may_edit_routes_at_all(THUISZORG)


def test_import_by_a_coordinator_lists_every_row_outside_the_scope() -> None:
    rows = [(2, pc4(1091, 1094)), (3, pc4(1095)), (4, RouteArea("Oost")), (5, pc4(1098))]
    verdict = may_import_routes(OOST, rows, WIJKEN)
    assert not verdict.allowed
    assert verdict.reason == "sheet: 2 row(s) outside your wijken"
    assert [p.split(":")[0] for p in verdict.problems] == ["line 3", "line 5"]
    assert may_import_routes(OOST, rows[:1] + rows[2:3], WIJKEN).allowed


@pytest.mark.parametrize(
    ("codes", "allowed"),
    [
        (("12345678", None), True),
        ((None, "12345678"), True),  # the scope code may be the AGB or the URA
        (("87654321", None), False),
        ((None, None), False),
    ],
)
def test_org_admin_manages_only_their_organisation(
    codes: tuple[str | None, str | None], allowed: bool
) -> None:
    verdict = may_manage_org(THUISZORG, codes)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason.startswith("provider: ")
        assert "12345678" in verdict.reason


def test_coordinator_may_not_manage_teams_or_availability() -> None:
    verdict = may_manage_org(OOST, ("12345678",))
    assert not verdict.allowed and verdict.reason.startswith("role: ")
    assert "wijkcoördinator" in verdict.reason_nl
    assert not manages_orgs_at_all(OOST)


def test_an_unknown_role_may_do_nothing() -> None:
    stranger = Admin("viewer", ("Oost",))
    assert not may_edit_route(stranger, RouteArea("Oost"), WIJKEN).allowed
    assert not may_manage_org(stranger, ("12345678",)).allowed
    assert not may_import_routes(stranger, [], WIJKEN).allowed


def test_route_area_texts_and_pc4s() -> None:
    assert RouteArea("Oost").text() == "wijk Oost"
    assert pc4(1091).text() == "PC4 1091"
    assert pc4(1091, 1093).text() == "PC4 1091-1093"
    assert pc4(1091, 1093).pc4s(WIJKEN) == {1091, 1092, 1093}
    assert RouteArea("Nergens").pc4s(WIJKEN) == set()
