"""Routing decisions are pure: preferred provider, fallbacks, wijken, availability,
validity, team coverage, the other direction (office hours, holidays), with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from bridge.canonical import CareType, Priority
from bridge.routing import (
    RouteRule,
    RoutingTable,
    TeamCoverage,
    Unavailability,
    gp_route_for,
    office_hours,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday


def rule(
    rid: int,
    provider: int,
    low: int,
    high: int,
    rank: int = 1,
    *,
    care_type: CareType = CareType.WONDZORG,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    wijk: str | None = None,
    pc4s: frozenset[int] = frozenset(),
) -> RouteRule:
    return RouteRule(
        id=rid,
        care_type=care_type,
        pc4_from=low,
        pc4_to=high,
        provider_id=provider,
        provider_name=f"Provider {provider}",
        rank=rank,
        valid_from=valid_from,
        valid_to=valid_to,
        wijk=wijk,
        pc4s=pc4s,
    )


TEAMS = [TeamCoverage(10, 1, "Team A"), TeamCoverage(20, 2, "Team B")]


def table(*rules: RouteRule, blocks: tuple[Unavailability, ...] = ()) -> RoutingTable:
    return RoutingTable(rules, TEAMS, blocks)


def test_preferred_provider_for_postcode_and_care_type() -> None:
    decision = table(rule(1, 1, 1091, 1098), rule(2, 2, 1011, 1018)).route_for(
        CareType.WONDZORG, "1092 ab", NOW
    )
    assert decision.routed
    assert (decision.provider_id, decision.team_id, decision.pc4) == (1, 10, 1092)
    assert decision.reasons[-1].startswith("matched route #1")


def test_rank_orders_care_type_filters_and_fallbacks_are_listed() -> None:
    routes = table(
        rule(1, 1, 1091, 1098, rank=2),
        rule(2, 2, 1091, 1098, rank=1),
        rule(3, 1, 1091, 1098, rank=1, care_type=CareType.GGZ),
    )
    wond = routes.route_for(CareType.WONDZORG, "1095XX", NOW, with_fallbacks=True)
    assert wond.provider_id == 2 and wond.fallbacks == (1,)
    assert routes.route_for(CareType.WONDZORG, "1095XX", NOW).fallbacks == ()
    assert routes.route_for(CareType.GGZ, "1095XX", NOW).provider_id == 1


def test_no_route_says_why() -> None:
    decision = table(rule(1, 1, 1091, 1098)).route_for(CareType.WONDZORG, "9999ZZ", NOW)
    assert not decision.routed
    assert decision.reasons == ("no route for wondzorg in PC4 9999",)


def test_invalid_postcode_is_not_routed() -> None:
    decision = table(rule(1, 1, 1091, 1098)).route_for(CareType.WONDZORG, "SW1A 1AA", NOW)
    assert not decision.routed and decision.pc4 is None


def test_validity_period_and_missing_team_fall_back() -> None:
    future = rule(1, 1, 1091, 1098, valid_from=datetime(2027, 1, 1, tzinfo=UTC))
    no_team = rule(2, 3, 1091, 1098, rank=2)
    fallback = rule(3, 2, 1091, 1098, rank=3)
    routes = table(future, no_team, fallback)
    decision = routes.route_for(CareType.WONDZORG, "1092AB", NOW)
    assert decision.provider_id == 2
    assert "not valid at" in decision.reasons[0]
    assert "provider has no team" in decision.reasons[1]
    assert decision.reasons[-1].startswith("fallback")
    later = routes.route_for(CareType.WONDZORG, "1092AB", datetime(2027, 2, 1, tzinfo=UTC))
    assert later.provider_id == 1


def test_expired_route_is_skipped() -> None:
    old = rule(1, 1, 1091, 1098, valid_to=datetime(2026, 1, 1, tzinfo=UTC))
    assert not table(old).route_for(CareType.WONDZORG, "1092AB", NOW).routed


def test_wijk_route_covers_exactly_its_pc4s() -> None:
    wijk = rule(1, 1, 1091, 1098, wijk="Watergraafsmeer", pc4s=frozenset({1092, 1097}))
    routes = table(wijk)
    hit = routes.route_for(CareType.WONDZORG, "1097AA", NOW)
    assert hit.routed and "wijk Watergraafsmeer" in hit.reasons[-1]
    assert not routes.route_for(CareType.WONDZORG, "1093AA", NOW).routed


def test_full_provider_is_skipped_until_its_period_ends() -> None:
    full = Unavailability(
        1,
        provider_id=1,
        start=NOW - timedelta(days=1),
        end=NOW + timedelta(days=2),
        care_type=CareType.WONDZORG,
        note="vol tot vrijdag",
    )
    routes = table(rule(1, 1, 1091, 1098), rule(2, 2, 1091, 1098, rank=2), blocks=(full,))
    now = routes.route_for(CareType.WONDZORG, "1092AB", NOW)
    assert now.provider_id == 2
    assert "provider is full until" in now.reasons[0] and "vol tot vrijdag" in now.reasons[0]
    assert routes.route_for(CareType.WONDZORG, "1092AB", NOW + timedelta(days=3)).provider_id == 1
    other_care = table(rule(1, 1, 1091, 1098, care_type=CareType.GGZ), blocks=(full,)).route_for(
        CareType.GGZ, "1092AB", NOW
    )
    assert other_care.provider_id == 1  # full for wondzorg only


def test_full_team_moves_to_the_providers_other_team() -> None:
    teams = [TeamCoverage(10, 1, "Team A"), TeamCoverage(11, 1, "Team A2")]
    block = Unavailability(1, 1, NOW - timedelta(hours=1), NOW + timedelta(hours=1), team_id=10)
    decision = RoutingTable([rule(1, 1, 1091, 1098)], teams, [block]).route_for(
        CareType.WONDZORG, "1092AB", NOW
    )
    assert decision.team_id == 11


def test_team_coverage_picks_the_team_serving_area_and_care_type() -> None:
    teams = [
        TeamCoverage(10, 1, "Noord", frozenset({CareType.WONDZORG}), ((1020, 1039),)),
        TeamCoverage(11, 1, "Oost", frozenset({CareType.WONDZORG}), ((1090, 1099),)),
    ]
    routes = RoutingTable([rule(1, 1, 1000, 1099)], teams)
    assert routes.route_for(CareType.WONDZORG, "1092AB", NOW).team_id == 11
    assert routes.route_for(CareType.WONDZORG, "1025AB", NOW).team_id == 10
    assert not routes.route_for(CareType.WONDZORG, "1050AB", NOW).routed


def test_priority_is_explained() -> None:
    decision = table(rule(1, 1, 1091, 1098)).route_for(
        CareType.WONDZORG, "1092AB", NOW, Priority.URGENT
    )
    assert decision.reasons[0].startswith("priority urgent")


def test_gaps_list_uncovered_area_and_care_type_pairs() -> None:
    routes = table(*(rule(i, 1, 1091, 1091, care_type=c) for i, c in enumerate(CareType)))
    gaps = routes.gaps([1091, 1092], NOW)
    assert gaps == [(1092, c) for c in CareType]


@pytest.mark.parametrize(
    ("moment", "open_now", "why"),
    [
        (datetime(2026, 11, 25, 9, 0, tzinfo=UTC), True, "within office hours"),  # Wed 10:00
        (datetime(2026, 11, 25, 17, 30, tzinfo=UTC), False, "outside office hours"),
        (datetime(2026, 11, 28, 10, 0, tzinfo=UTC), False, "weekend"),  # Saturday
        (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), False, "public holiday"),  # Christmas
        (datetime(2027, 4, 27, 10, 0, tzinfo=UTC), False, "public holiday"),  # King's Day
    ],
)
def test_office_hours(moment: datetime, open_now: bool, why: str) -> None:
    assert office_hours(moment)[0] is open_now
    assert why in office_hours(moment)[1]


def test_nurse_question_goes_to_practice_or_huisartsenpost() -> None:
    practice, hap = (1, "Praktijk De Pijp"), (9, "HAP Amsterdam")
    day = gp_route_for(practice, hap, datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    assert day.org_id == 1 and day.in_office_hours
    night = gp_route_for(practice, hap, datetime(2026, 11, 25, 22, 0, tzinfo=UTC))
    assert night.org_id == 9 and "huisartsenpost" in night.reasons[-1]
    assert gp_route_for(practice, None, datetime(2026, 12, 25, 9, tzinfo=UTC)).org_id is None


def test_regional_office_hours_window() -> None:
    evening = datetime(2026, 11, 25, 17, 30, tzinfo=UTC)  # 18:30 in Amsterdam
    assert not office_hours(evening)[0]
    assert office_hours(evening, time(8, 0), time(19, 0))[0]
    assert (
        "outside office hours (08:00-19:00)"
        in office_hours(datetime(2026, 11, 25, 18, 30, tzinfo=UTC), time(8, 0), time(19, 0))[1]
    )
