"""The ``wijkbrug`` admin commands as a regional coordinator uses them (real processes,
SQLite data dir): exit codes, explanations, coverage formats, the agreement-sheet import."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.bridge import WIJKBRUG

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]
HEADER = "care_type,pc4_from,pc4_to_or_wijk,provider_ura,rank,valid_from,valid_to\n"


@pytest.fixture
def run(tmp_path: Path) -> Run:
    def wijkbrug(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [WIJKBRUG, "--data-dir", str(tmp_path / "data"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result

    wijkbrug("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk De Pijp")
    wijkbrug("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    wijkbrug("org", "add", "provider", "--ura", "87654321", "--name", "Buurtzorg Centrum")
    wijkbrug("team", "add", "--provider", "12345678", "--name", "Oost", "--member", "@n1:localhost")
    wijkbrug(
        "team",
        "add",
        "--provider",
        "87654321",
        "--name",
        "Centrum",
        "--member",
        "@n2:localhost",
        "--care-type",
        "wondzorg",
    )
    wijkbrug("wijk", "add", "--name", "Watergraafsmeer", "--pc4", "1091-1098")
    return wijkbrug


def test_explain_with_time_priority_and_availability(run: Run) -> None:
    run(
        "route",
        "add",
        "--care-type",
        "wondzorg",
        "--wijk",
        "Watergraafsmeer",
        "--provider",
        "12345678",
    )
    run(
        "route",
        "add",
        "--care-type",
        "wondzorg",
        "--pc4",
        "1091-1098",
        "--provider",
        "87654321",
        "--rank",
        "2",
    )
    out = run(
        "route",
        "explain",
        "--care-type",
        "wondzorg",
        "--postcode",
        "1092 AB",
        "--priority",
        "urgent",
    ).stdout
    assert "priority urgent" in out and "-> Thuiszorg Oost" in out
    run(
        "availability",
        "full",
        "--provider",
        "12345678",
        "--care-type",
        "wondzorg",
        "--from",
        "2026-11-23",
        "--until",
        "2026-11-28",
        "--note",
        "vol tot vrijdag",
    )
    during = run(
        "route",
        "explain",
        "--care-type",
        "wondzorg",
        "--postcode",
        "1092 AB",
        "--at",
        "2026-11-25T10:00",
    ).stdout
    assert "vol tot vrijdag" in during and "-> Buurtzorg Centrum" in during
    assert "within office hours: the nurse's answers go to the practice" in during
    christmas = run(
        "route",
        "explain",
        "--care-type",
        "wondzorg",
        "--postcode",
        "1092 AB",
        "--at",
        "2026-12-25T10:00",
    ).stdout
    assert "public holiday (Christmas Day): the nurse's answers also go to the huisartsenpost" in (
        christmas
    )
    after = run(
        "route",
        "explain",
        "--care-type",
        "wondzorg",
        "--postcode",
        "1092 AB",
        "--at",
        "2026-11-29T10:00",
    ).stdout
    assert "-> Thuiszorg Oost" in after
    refused = run("route", "explain", "--care-type", "ggz", "--postcode", "1092 AB", code=1)
    assert "no route for ggz in PC4 1092" in refused.stdout
    bad = run(
        "route",
        "add",
        "--care-type",
        "wondzorg",
        "--pc4",
        "999-1000",
        "--provider",
        "12345678",
        code=2,
    )
    assert "1000-9999" in bad.stderr
    clash = run(
        "route", "add", "--care-type", "wondzorg", "--pc4", "1095", "--provider", "87654321", code=1
    )
    assert "rank:" in clash.stderr
    changes = run("changes").stdout
    assert "availability.full" in changes and "route.add" in changes


def test_coverage_formats(run: Run) -> None:
    run(
        "route",
        "add",
        "--care-type",
        "wondzorg",
        "--wijk",
        "Watergraafsmeer",
        "--provider",
        "12345678",
    )
    table = run("route", "coverage").stdout
    assert table.startswith("8 PC4 area(s) checked, 40 gap(s)")
    gaps = json.loads(run("route", "coverage", "--format", "json").stdout)
    assert {"pc4": 1092, "care_type": "ggz"} in gaps
    assert {"pc4": 1092, "care_type": "wondzorg"} not in gaps
    csv_out = run("route", "coverage", "--format", "csv", "--pc4", "1091").stdout.splitlines()
    assert csv_out[0] == "pc4,care_type" and len(csv_out) == 1 + 5


def test_import_is_all_or_nothing_lists_lines_and_reimport_is_a_no_op(
    run: Run, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        HEADER
        + "wondzorg,,Watergraafsmeer,12345678,1,,\n"
        + "wondzorg,1091,1098,87654321,2,,\n"
        + "ggz,1011,1018,12345678,1,2027-01-01,\n"
    )
    first = run("route", "import", str(good))
    assert "imported 3 new route(s) of 3 row(s)" in first.stdout
    again = run("route", "import", str(good))
    assert "imported 0 new route(s)" in again.stdout
    before = run("route", "list").stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(
        HEADER
        + "medicatie,1011,1018,12345678,1,,\n"
        + "medicatie,1011,1018,99999999,1,,\n"
        + "medicatie,1011,1018,12345678,1,gisteren,\n"
        + "wijkverpleging,,Nergens,12345678,1,,\n"
    )
    refused = run("route", "import", str(bad), code=1)
    for line in ("line 3: provider:", "line 4: valid_from:", "line 5: wijk:"):
        assert line in refused.stderr
    assert run("route", "list").stdout == before
