"""The directory and agreements in the database (SQLite and PostgreSQL): refusals name the
field and change nothing, imports are all-or-nothing and idempotent, changes are recorded,
and the routing table follows every change at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bridge.agreements import parse_sheet
from bridge.canonical import CareType, Priority
from bridge.errors import ErrorCode, WijkbrugError
from bridge.store import Store
from tests.support.examples import region

pytestmark = pytest.mark.integration

HEADER = "care_type,pc4_from,pc4_to_or_wijk,provider_ura,rank,valid_from,valid_to\n"


def route_count(store: Store) -> int:
    with store.session() as s:
        return int(s.execute(text("SELECT count(*) FROM routes")).scalar_one())


def test_refusals_name_the_field_and_change_nothing(store: Store) -> None:
    region(store)
    before = route_count(store)
    attempts: list[tuple[Callable[[], object], str, ErrorCode]] = [
        (
            lambda: store.add_route(CareType.WONDZORG, 1091, 1098, "99999999"),
            "provider:",
            ErrorCode.NOT_FOUND,
        ),
        (
            lambda: store.add_route(CareType.WONDZORG, 999, 1005, "12345678"),
            "pc4:",
            ErrorCode.VALUE,
        ),
        (
            lambda: store.add_route(CareType.WONDZORG, None, None, "12345678", wijk="Nergens"),
            "wijk:",
            ErrorCode.NOT_FOUND,
        ),
        (
            lambda: store.add_route(CareType.WONDZORG, 1095, 1099, "12345678"),
            "rank:",
            ErrorCode.CONFLICT,
        ),  # overlaps the region's rank-1 route
    ]
    for attempt, field, code in attempts:
        with pytest.raises(WijkbrugError) as err:
            attempt()
        assert err.value.message.startswith(field) and err.value.code is code
    assert route_count(store) == before
    # Same area and rank in consecutive periods is fine: next year's sheet, loaded ahead.
    switch = datetime(2027, 1, 1, tzinfo=UTC)
    store.add_route(CareType.MEDICATIE, 1091, 1098, "12345678", valid_to=switch)
    store.add_route(CareType.MEDICATIE, 1091, 1098, "12345678", valid_from=switch)
    with pytest.raises(WijkbrugError):
        store.add_route(CareType.MEDICATIE, 1095, 1095, "12345678", valid_from=switch)
    assert store.decide(CareType.MEDICATIE, "1092AB", at=switch).routed


def test_wijk_routes_and_availability_follow_changes_at_once(store: Store) -> None:
    region(store)
    store.add_org("provider", "Buurtzorg Centrum", agb=None, ura="87654321")
    store.add_team("87654321", "Team Centrum", ["@nurse3:localhost"])
    store.add_wijk("Oosterpark", [(1091, 1092)])
    store.add_route(CareType.GGZ, None, None, "87654321", wijk="Oosterpark")
    assert store.decide(CareType.GGZ, "1092AB").provider_name == "Buurtzorg Centrum"
    assert not store.decide(CareType.GGZ, "1093AB").routed
    store.add_route(CareType.WONDZORG, 1091, 1098, "87654321", rank=2)
    now = datetime.now(UTC)
    store.add_unavailability(
        "12345678",
        now - timedelta(minutes=1),
        now + timedelta(days=1),
        care_type=CareType.WONDZORG,
        note="vol tot vrijdag",
    )
    decision = store.decide(CareType.WONDZORG, "1092AB", priority=Priority.URGENT)
    assert decision.provider_name == "Buurtzorg Centrum"
    assert any("vol tot vrijdag" in r for r in decision.reasons)
    (block,) = store.unavailability()
    store.remove_unavailability(block.id)
    assert store.decide(CareType.WONDZORG, "1092AB").provider_name == "Thuiszorg Oost"
    actions = [c["action"] for c in store.changes()]
    assert actions[:3] == ["availability.open", "availability.full", "route.add"]


def test_import_is_all_or_nothing_and_idempotent(store: Store) -> None:
    region(store)
    store.add_wijk("Watergraafsmeer", [(1091, 1098)])
    good = (
        HEADER
        + "wijkverpleging,,Watergraafsmeer,12345678,1,,\n"
        + "ggz,1011,1018,12345678,1,2027-01-01,\n"
    )
    rows, errors = parse_sheet(good)
    assert errors == []
    assert store.import_routes(rows) == 2
    assert store.import_routes(rows) == 0  # re-import: no-op
    count = route_count(store)
    bad = (
        HEADER
        + "medicatie,1011,1018,12345678,1,,\n"  # fine on its own
        + "medicatie,1011,1018,99999999,1,,\n"  # unknown provider
        + "tandarts,1011,1018,12345678,1,,\n"  # unknown care type (found while parsing)
        + "wondzorg,1092,1093,12345678,1,,\n"  # overlaps the region's rank-1 wondzorg route
    )
    rows, errors = parse_sheet(bad)
    with pytest.raises(WijkbrugError) as err:
        store.import_routes(rows, sheet_errors=errors)
    lines = err.value.details["errors"]
    assert [line.split(":")[0] for line in lines] == ["line 3", "line 4", "line 5"]
    assert route_count(store) == count  # nothing of the bad sheet stayed
