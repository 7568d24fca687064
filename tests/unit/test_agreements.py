"""Parsing a region's agreement sheet: every bad line reported with its number and field."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.agreements import parse_sheet
from bridge.canonical import CareType

HEADER = "care_type,pc4_from,pc4_to_or_wijk,provider_ura,rank,valid_from,valid_to\n"


def test_ranges_wijken_ranks_and_dates() -> None:
    rows, errors = parse_sheet(
        HEADER
        + "wondzorg,1091,1098,12345678,1,2027-01-01,2028-01-01\n"
        + "wijkverpleging,,Watergraafsmeer,12345678,,,\n"
        + "\n"
        + "ggz,1011,,87654321,2,,\n"
    )
    assert errors == []
    (l1, r1), (l2, r2), (l4, r4) = rows
    assert (l1, r1.care_type, r1.pc4_from, r1.pc4_to) == (2, CareType.WONDZORG, 1091, 1098)
    assert r1.valid_from == datetime(2027, 1, 1, tzinfo=UTC)
    assert (l2, r2.wijk, r2.rank, r2.pc4_from) == (3, "Watergraafsmeer", 1, None)
    assert (l4, r4.pc4_from, r4.pc4_to, r4.rank) == (5, 1011, 1011, 2)


def test_every_bad_line_is_listed_with_the_field() -> None:
    _, errors = parse_sheet(
        HEADER
        + "tandarts,1091,1098,12345678,1,,\n"
        + "wondzorg,0999,1098,12345678,1,,\n"
        + "wondzorg,1091,1098,1234,1,,\n"
        + "wondzorg,1091,1098,12345678,0,,\n"
        + "wondzorg,1091,1098,12345678,1,morgen,\n"
        + "wondzorg,,,12345678,1,,\n"
    )
    assert [line for line, _ in errors] == [2, 3, 4, 5, 6, 7]
    text = "\n".join(message for _, message in errors)
    for field in ("care_type", "pc4_from", "provider_ura", "rank", "valid_from"):
        assert f"{field}:" in text


def test_missing_columns() -> None:
    rows, errors = parse_sheet("care_type,pc4\nwondzorg,1091\n")
    assert rows == [] and "missing column(s)" in errors[0][1]
