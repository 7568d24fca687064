"""A region's agreement sheet (CSV) -> route rows, with every bad line reported (pure).

Columns, with a header line::

    care_type,pc4_from,pc4_to_or_wijk,provider_ura,rank,valid_from,valid_to
    wondzorg,1091,1098,12345678,1,2027-01-01,
    wijkverpleging,,Watergraafsmeer,12345678,1,,

``pc4_to_or_wijk`` holds the end of a PC4 range (with ``pc4_from``), or the name of a wijk
(``pc4_from`` empty). ``rank`` defaults to 1, the validity dates to "always". Dates are ISO
dates or date-times (UTC unless they carry an offset); ``valid_to`` is exclusive.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from bridge.canonical import CareType
from bridge.directory import RouteRow
from bridge.identifiers import is_valid_ura
from bridge.routing import PC4_MAX, PC4_MIN

COLUMNS = (
    "care_type",
    "pc4_from",
    "pc4_to_or_wijk",
    "provider_ura",
    "rank",
    "valid_from",
    "valid_to",
)


def _moment(text: str, field: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an ISO date") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _row(record: dict[str, str]) -> RouteRow:
    problems: list[str] = []
    care_text = record.get("care_type", "")
    care_type: CareType | None = None
    try:
        care_type = CareType(care_text)
    except ValueError:
        problems.append(f"care_type: unknown care type {care_text!r}")
    ura = record.get("provider_ura", "")
    if not is_valid_ura(ura):
        problems.append(f"provider_ura: {ura!r} is not an 8-digit URA")
    low_text, second = record.get("pc4_from", ""), record.get("pc4_to_or_wijk", "")
    pc4_from = pc4_to = None
    wijk = None
    if low_text:
        if not low_text.isdigit() or not (second or low_text).isdigit():
            problems.append("pc4_from/pc4_to_or_wijk: a PC4 range is two 4-digit numbers")
        else:
            pc4_from, pc4_to = int(low_text), int(second or low_text)
            if not (PC4_MIN <= pc4_from <= pc4_to <= PC4_MAX):
                problems.append(f"pc4_from: {pc4_from}-{pc4_to} must be within 1000-9999")
    elif second:
        wijk = second
    else:
        problems.append("pc4_from: give a PC4 range or a wijk")
    rank_text = record.get("rank", "") or "1"
    rank = int(rank_text) if rank_text.isdigit() and int(rank_text) >= 1 else 0
    if not rank:
        problems.append(f"rank: {rank_text!r} is not a whole number of at least 1")
    valid_from = valid_to = None
    for field in ("valid_from", "valid_to"):
        try:
            value = _moment(record.get(field, ""), field)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if field == "valid_from":
            valid_from = value
        else:
            valid_to = value
    if problems or care_type is None:
        raise ValueError("; ".join(problems))
    return RouteRow(care_type, ura, rank, pc4_from, pc4_to, wijk, valid_from, valid_to)


def parse_sheet(text: str) -> tuple[list[tuple[int, RouteRow]], list[tuple[int, str]]]:
    """The rows and the problems (one per bad row), each with its line number."""
    # newline="": the csv module itself takes every line ending (Windows, Unix, old Mac
    # exports) and keeps quoted line breaks inside a field.
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    rows: list[tuple[int, RouteRow]] = []
    errors: list[tuple[int, str]] = []
    try:
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            return [], [(1, f"line 1: missing column(s) {', '.join(missing)}")]
        for fields in reader:
            line = reader.line_num
            extra = [f for f in fields[len(header) :] if f.strip()]
            if extra:
                errors.append((line, f"line {line}: more columns than the header names"))
                continue
            clean = {name: value.strip() for name, value in zip(header, fields, strict=False)}
            if not any(clean.values()):
                continue
            try:
                rows.append((line, _row(clean)))
            except ValueError as exc:
                errors.append((line, f"line {line}: {exc}"))
    except csv.Error as exc:  # e.g. a field over csv's size limit
        line = reader.line_num
        return [], [(line, f"line {line}: not readable as CSV ({exc})")]
    return rows, errors
