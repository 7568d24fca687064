"""Dutch identifiers: the BSN 11-test, AGB/URA formats, postcodes, systems and Matrix IDs."""

from __future__ import annotations

import pytest

from bridge.identifiers import (
    AGB_SYSTEM,
    BSN_SYSTEM,
    URA_SYSTEM,
    format_postcode,
    is_matrix_user_id,
    is_valid_agb,
    is_valid_bsn,
    is_valid_ura,
    normalise_postcode,
    normalise_system,
    pc4,
)


@pytest.mark.parametrize(
    "bsn",
    [
        "999911120",  # test BSN used throughout Wijkbrug
        "111222333",  # the patient of the Nictiz zib2020 examples
        "123456782",
        "999990019",
    ],
)
def test_bsn_passing_the_11_test(bsn: str) -> None:
    assert is_valid_bsn(bsn)


@pytest.mark.parametrize(
    "bsn",
    [
        "999911121",  # one digit off
        "111222334",
        "123456789",
        "12345678",  # eight digits
        "1234567890",
        "000000000",  # passes the arithmetic, but is no BSN
        "99991112O",  # letter O
        " 999911120",
        "",
    ],
)
def test_bsn_failing_the_11_test(bsn: str) -> None:
    assert not is_valid_bsn(bsn)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("1092 AB", "1092AB"),
        ("1092ab", "1092AB"),
        (" 1092  ab ", "1092AB"),
        ("1012 NX", "1012NX"),
        ("1092", "1092"),  # a bare PC4 is enough to route
    ],
)
def test_postcode_normalisation(raw: str, normalised: str) -> None:
    assert normalise_postcode(raw) == normalised


@pytest.mark.parametrize(
    "raw", ["0192 AB", "1092 A", "10921AB", "B-1000", "1092-AB", "", "AB 1092"]
)
def test_not_a_dutch_postcode(raw: str) -> None:
    assert normalise_postcode(raw) is None


def test_postcode_written_form_and_area() -> None:
    assert format_postcode("1092AB") == "1092 AB"
    assert format_postcode("1092") == "1092"
    assert pc4("1092AB") == 1092


def test_agb_and_ura_are_eight_digits() -> None:
    assert is_valid_agb("01234567") and is_valid_ura("06020806")
    for bad in ("1234567", "123456789", "0123456a", ""):
        assert not is_valid_agb(bad) and not is_valid_ura(bad)


def test_oids_map_to_nictiz_naming_systems() -> None:
    assert normalise_system("urn:oid:2.16.840.1.113883.2.4.6.3") == BSN_SYSTEM
    assert normalise_system("urn:oid:2.16.840.1.113883.2.4.6.1") == AGB_SYSTEM
    assert normalise_system("urn:oid:2.16.528.1.1007.3.3") == URA_SYSTEM
    assert normalise_system(BSN_SYSTEM) == BSN_SYSTEM
    assert normalise_system("urn:oid:1.2.3") == "urn:oid:1.2.3"


def test_matrix_user_ids() -> None:
    assert is_matrix_user_id("@nurse1:localhost")
    assert is_matrix_user_id("@wijkbrug_01234567:zorg.example:8448")
    assert not is_matrix_user_id("nurse1:localhost")
    assert not is_matrix_user_id("@nurse1")
