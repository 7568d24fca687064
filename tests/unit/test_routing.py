"""Routing decisions are pure: the preferred provider, fallbacks, validity, explanations."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.canonical import CareType
from bridge.routing import RouteRule, route_for

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


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
    )


TEAMS = {1: [10], 2: [20]}


def test_preferred_provider_for_postcode_and_care_type() -> None:
    rules = [rule(1, 1, 1091, 1098), rule(2, 2, 1011, 1018)]
    decision = route_for(CareType.WONDZORG, "1092 ab", rules, TEAMS, NOW)
    assert decision.routed
    assert (decision.provider_id, decision.team_id, decision.pc4) == (1, 10, 1092)
    assert decision.reasons[-1].startswith("matched route #1")


def test_rank_orders_and_care_type_filters() -> None:
    rules = [
        rule(1, 1, 1091, 1098, rank=2),
        rule(2, 2, 1091, 1098, rank=1),
        rule(3, 1, 1091, 1098, rank=1, care_type=CareType.GGZ),
    ]
    assert route_for(CareType.WONDZORG, "1095XX", rules, TEAMS, NOW).provider_id == 2
    assert route_for(CareType.GGZ, "1095XX", rules, TEAMS, NOW).provider_id == 1


def test_no_route_says_why() -> None:
    decision = route_for(CareType.WONDZORG, "9999ZZ", [rule(1, 1, 1091, 1098)], TEAMS, NOW)
    assert not decision.routed
    assert decision.reasons == ("no route for wondzorg in PC4 9999",)


def test_invalid_postcode_is_not_routed() -> None:
    decision = route_for(CareType.WONDZORG, "SW1A 1AA", [rule(1, 1, 1091, 1098)], TEAMS, NOW)
    assert not decision.routed and decision.pc4 is None


def test_validity_period_and_missing_team_fall_back() -> None:
    future = rule(1, 1, 1091, 1098, valid_from=datetime(2027, 1, 1, tzinfo=UTC))
    no_team = rule(2, 3, 1091, 1098, rank=2)
    fallback = rule(3, 2, 1091, 1098, rank=3)
    decision = route_for(CareType.WONDZORG, "1092AB", [future, no_team, fallback], TEAMS, NOW)
    assert decision.provider_id == 2
    assert "not valid at" in decision.reasons[0]
    assert "provider has no team" in decision.reasons[1]
    later = route_for(
        CareType.WONDZORG, "1092AB", [future, fallback], TEAMS, datetime(2027, 2, 1, tzinfo=UTC)
    )
    assert later.provider_id == 1


def test_expired_route_is_skipped() -> None:
    old = rule(1, 1, 1091, 1098, valid_to=datetime(2026, 1, 1, tzinfo=UTC))
    assert not route_for(CareType.WONDZORG, "1092AB", [old], TEAMS, NOW).routed
