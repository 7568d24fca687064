"""Dutch healthcare identifiers: NamingSystem URIs, OIDs and their checks (pure)."""

from __future__ import annotations

import re
from operator import mul

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
AGB_SYSTEM = "http://fhir.nl/fhir/NamingSystem/agb-z"
URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
UZI_SYSTEM = "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"
BIG_SYSTEM = "http://fhir.nl/fhir/NamingSystem/big"
MATRIX_SYSTEM = "https://wijkbrug.nl/fhir/NamingSystem/matrix-user-id"
CASE_SYSTEM = "https://wijkbrug.nl/fhir/NamingSystem/case"
MESSAGE_SYSTEM = "https://wijkbrug.nl/fhir/NamingSystem/message"

# STU3-era senders (and EDIFACT) use OIDs for the same systems.
OID_TO_SYSTEM = {
    "urn:oid:2.16.840.1.113883.2.4.6.3": BSN_SYSTEM,
    "urn:oid:2.16.840.1.113883.2.4.6.1": AGB_SYSTEM,
    "urn:oid:2.16.528.1.1007.3.3": URA_SYSTEM,
    "urn:oid:2.16.528.1.1007.3.1": UZI_SYSTEM,
    "urn:oid:2.16.528.1.1007.5.1": BIG_SYSTEM,
}

_POSTCODE = re.compile(r"^\s*([1-9][0-9]{3})\s*([A-Za-z]{2})?\s*$")
_NINE_DIGITS = re.compile(r"[0-9]{9}")
_EIGHT_DIGITS = re.compile(r"[0-9]{8}")
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)
_BSN_ZEROS = ord("0") * sum(_BSN_WEIGHTS)  # what the digits' character codes add
_MXID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")


def normalise_system(system: str) -> str:
    """The NamingSystem URI for a system given as URI or OID."""
    return OID_TO_SYSTEM.get(system, system)


def is_valid_bsn(value: str) -> bool:
    """The BSN 11-test (elfproef): 9 digits, weights 9..2 and -1, sum divisible by 11."""
    if not _NINE_DIGITS.fullmatch(value):
        return False
    # The weighted sum over the ASCII codes (the pattern admits ASCII digits only), in C.
    total = sum(map(mul, value.encode("ascii"), _BSN_WEIGHTS)) - _BSN_ZEROS
    return total % 11 == 0 and value != "000000000"


def is_valid_agb(value: str) -> bool:
    """An AGB code is 8 digits."""
    return _EIGHT_DIGITS.fullmatch(value) is not None


def is_valid_ura(value: str) -> bool:
    """A URA number is 8 digits."""
    return _EIGHT_DIGITS.fullmatch(value) is not None


def normalise_postcode(value: str) -> str | None:
    """``"1092 ab"`` -> ``"1092AB"``; a bare PC4 stays four digits; ``None`` if not Dutch."""
    match = _POSTCODE.match(value)
    if not match:
        return None
    letters = (match.group(2) or "").upper()
    return match.group(1) + letters


def format_postcode(postcode: str) -> str:
    """A normalised postcode in its written form: ``"1092AB"`` -> ``"1092 AB"``."""
    return f"{postcode[:4]} {postcode[4:]}" if len(postcode) == 6 else postcode


def pc4(postcode: str) -> int:
    """The four-digit area of a normalised postcode."""
    return int(postcode[:4])


def is_matrix_user_id(value: str) -> bool:
    """A (historical-grammar tolerant) Matrix user ID like ``@nurse1:localhost``."""
    return _MXID.match(value) is not None
