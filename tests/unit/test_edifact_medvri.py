"""The edifact-medvri dialect: Medeur MEDVRI interchanges in, MEDVRI replies out.

Golden inputs are the interchanges in tests/data/edifact (written for these tests after
the Medeur layout and the real-world forms described in the module docstring). Every
mapped field is compared; every bad input must name its segment and position and must
never repeat the BSN, a name or the letter's text.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydifact.exceptions import EDISyntaxError
from pydifact.parser import Parser

from adapters import edifact_medvri, fhir_r4
from adapters.edifact_medvri import EdifactError, EdifactIssue, parse_interchange, render_reply
from bridge import fhirmodel
from bridge.canonical import CareType, CaseMessage, Party, Patient, Priority, Reply
from bridge.errors import ErrorCode, WijkbrugError
from bridge.identifiers import AGB_SYSTEM, BSN_SYSTEM

DATA = Path(__file__).resolve().parents[1] / "data" / "edifact"
EDI = "application/edifact"
AMS = ZoneInfo("Europe/Amsterdam")
GOOD = sorted(p.name for p in DATA.glob("medvri-*.edi"))


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse(name: str) -> list[CaseMessage]:
    return parse_interchange(load(name), EDI)


def failure(body: bytes) -> EdifactError:
    with pytest.raises(EdifactError) as caught:
        parse_interchange(body, EDI)
    return caught.value


def places(error: WijkbrugError) -> list[tuple[Any, ...]]:
    """(code, segment, index, element, component, message) of every issue."""
    out = []
    for issue in error.all_issues():
        assert isinstance(issue, EdifactIssue)
        out.append(
            (
                issue.code,
                issue.segment,
                issue.segment_index,
                issue.element,
                issue.component,
                issue.message_number,
            )
        )
    return out


def interchange(
    *body: str,
    syntax: str = "UNOA:1",
    ref: str = "C1",
    sender: str = "01234567",
    encoding: str = "latin-1",
) -> bytes:
    """One MEDVRI message around the given body segments (no terminators needed)."""
    segments = [
        f"UNB+{syntax}+{sender}+500099001+260125:0930+{ref}",
        "UNH+1+MEDVRI:1",
        *body,
        f"UNT+{len(body) + 2}+1",
        f"UNZ+1+{ref}",
    ]
    return "".join(s + "'" for s in segments).encode(encoding)


GGA = "GGA+M. de Vries++Huisartsenpraktijk De Pijp"
PID = "PID+1941:03:12+V+Jansen::Bakker::Geertruida:G.++BSN999990019"
PAD = "PAD+Van Woustraat:45-2::Amsterdam:1074AB"
TXT = "TXT+Graag wondcontrole."


def letter(*extra: str, txt: tuple[str, ...] = (TXT,), **kwargs: str) -> bytes:
    return interchange(GGA, PID, PAD, *extra, *txt, **kwargs)


# Values from the fixtures that must never show up in an error response.
SECRETS = ("999990019", "999990018", "Bakker", "Geertruida", "Jansen", "wondcontrole", "Verband")


def assert_no_patient_data(error: WijkbrugError) -> None:
    shown = json.dumps(edifact_medvri.error_response(error), ensure_ascii=False)
    shown += " ".join(f"{i.diagnostics} {i.expression}" for i in error.all_issues())
    for secret in SECRETS:
        assert secret not in shown


# ---------------------------------------------------------------- surface


def test_surface() -> None:
    assert edifact_medvri.NAME == "edifact-medvri"
    assert edifact_medvri.MEDIA_TYPES == ("application/edifact", "text/plain")
    assert issubclass(EdifactError, WijkbrugError)


@pytest.mark.parametrize(
    "content_type",
    ["application/edifact", "application/EDIFACT", "text/plain; charset=iso-8859-1", ""],
)
def test_accepted_media_types(content_type: str) -> None:
    assert len(parse_interchange(load("medvri-normal.edi"), content_type)) == 1


def test_other_media_types_are_415() -> None:
    with pytest.raises(WijkbrugError) as caught:
        parse_interchange(load("medvri-normal.edi"), "application/fhir+json")
    assert caught.value.status == 415


def test_too_large_is_413() -> None:
    body = b" " * (edifact_medvri.MAX_BODY_BYTES + 1)
    with pytest.raises(WijkbrugError) as caught:
        parse_interchange(body, EDI)
    assert caught.value.status == 413


# ---------------------------------------------------------------- golden interchanges


def test_normal_medvri() -> None:
    [msg] = parse("medvri-normal.edi")
    assert msg.identifier.system == "urn:wijkbrug:edifact:01234567"
    assert msg.identifier.value == "HA2601250001/HA2601250001"
    assert msg.care_type is CareType.WONDZORG
    assert msg.priority is Priority.ROUTINE
    assert msg.patient == Patient(
        bsn="999990019",
        postcode="1074AB",
        name="Geertruida Bakker-Jansen",
        birth_date=date(1941, 3, 12),
    )
    assert msg.sender == Party(
        name="M. de Vries", organisation_name="Huisartsenpraktijk De Pijp", agb="01234567"
    )
    assert msg.text == (
        "Geachte collega,\n"
        "\n"
        "Mevrouw is gisteren ontslagen uit het ziekenhuis na een onderbeenwond\n"
        "links. Graag dagelijks wondverzorging volgens het wondbeleid, verband\n"
        "wisselen en bij tekenen van infectie contact opnemen met de praktijk.\n"
        "\n"
        "Met vriendelijke groet,\n"
        "M. de Vries, huisarts"
    )
    assert msg.sent == datetime(2026, 1, 25, 9, 28, tzinfo=AMS)
    assert msg.recipient_ura is None


def test_normal_medvri_resource() -> None:
    [msg] = parse("medvri-normal.edi")
    resource = msg.resource
    patient, practitioner, organization, role = resource["contained"]
    assert patient == {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [{"system": BSN_SYSTEM, "value": "999990019"}],
        "name": [
            {"text": "Geertruida Bakker-Jansen", "family": "Bakker-Jansen", "given": ["Geertruida"]}
        ],
        "telecom": [{"system": "phone", "value": "0206711234"}],
        "gender": "female",
        "birthDate": "1941-03-12",
        "address": [
            {
                "use": "home",
                "line": ["Van Woustraat 45-2"],
                "city": "Amsterdam",
                "postalCode": "1074 AB",
            }
        ],
    }
    assert practitioner["identifier"] == [{"system": AGB_SYSTEM, "value": "01234567"}]
    assert organization["name"] == "Huisartsenpraktijk De Pijp"
    assert role["practitioner"]["reference"] == "#sender"
    assert resource["identifier"] == [
        {"system": "urn:wijkbrug:edifact:01234567", "value": "HA2601250001/HA2601250001"}
    ]
    assert resource["category"][0]["coding"][0]["code"] == "wondzorg"
    assert resource["sent"] == "2026-01-25T08:28:00Z"
    assert resource["sender"] == {
        "reference": "#sender-role",
        "display": "M. de Vries (Huisartsenpraktijk De Pijp)",
    }
    assert resource["payload"] == [{"contentString": msg.text}]
    assert resource["note"] == [
        {
            "text": "Geadresseerd aan (EDIFACT GGO): "
            "Wijkverpleging De Pijp, Wijkteam Zuid, Thuiszorg Amstel"
        }
    ]
    assert "recipient" not in resource


@pytest.mark.parametrize("name", GOOD)
def test_resource_is_a_communication_fhir_r4_reads_the_same(name: str) -> None:
    """The normalised R4 JSON is valid and says what the CaseMessage says."""
    for msg in parse(name):
        assert fhirmodel.check(msg.resource) == []
        again = fhir_r4.read_communication(msg.resource)
        assert replace(again, resource={}) == replace(msg, resource={})


def test_una_and_release_characters() -> None:
    [msg] = parse("medvri-una-release.edi")
    assert msg.identifier.value == "202602010001/1"
    assert msg.care_type is CareType.PALLIATIEVE_ZORG  # display name, released colon
    assert msg.priority is Priority.URGENT
    assert msg.patient == Patient(
        bsn="999990020",
        postcode="1094HB",
        name="Johannes van 't Hek",
        birth_date=date(1938, 11, 30),
    )
    assert msg.sender == Party(
        name="A. Ouali", organisation_name="Gezondheidscentrum Oost+West", agb="01234568"
    )
    # ?' ?+ ?: ?? released; the unreleased colon of the last line is put back.
    assert msg.text == (
        "Dhr. 't Hek (?) wil thuis sterven; graag vandaag intake.\n"
        "Pijn 7+/10, morfine 5:10 mg.\n"
        "Bloeddruk: 110/70, pols 96."
    )
    patient = msg.resource["contained"][0]
    assert patient["telecom"] == [{"system": "phone", "value": "+31612345678"}]
    assert patient["address"][0]["line"] == ["Javastraat 12:A"]
    assert patient["gender"] == "male"


def test_txt_line_numbers_real_world_variant() -> None:
    """``TXT:1+...``, a bare ``TXT:3'`` blank line, no DET, CR line ends (mmerlijn/msg)."""
    [msg] = parse("medvri-txt-qualifier.edi")
    assert (
        msg.text
        == "Graag hulp bij het aantrekken van steunkousen,\nochtend en avond.\n\nDank u wel."
    )
    assert msg.care_type is CareType.WIJKVERPLEGING  # no Zorgsoort line: the default
    assert msg.identifier.value == "SNM1020/1020"
    assert msg.sent == datetime(2026, 2, 3, 8, 5, tzinfo=AMS)  # from UNB, there is no DET
    assert msg.patient == Patient(
        bsn="999990032", postcode="1066CM", name="P.J. van den Berg", birth_date=date(1950, 7, 4)
    )
    assert msg.sender.agb == "01234569"
    assert "note" in msg.resource


def test_pydifact_alone_rejects_a_composite_segment_tag() -> None:
    """Why _Reader exists: pydifact 0.2.3 raises on ``TXT:1+...``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EDISyntaxError):
            list(Parser().parse(load("medvri-txt-qualifier.edi").decode("latin-1")))


def test_released_apostrophe_una_in_text_is_text() -> None:
    """pydifact alone looks for 'UNA anywhere; a UNA is always put in front instead."""
    body = letter(txt=("TXT+zie ?'UNA+x",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EDISyntaxError):
            list(Parser().parse(body.decode("latin-1")))
    [msg] = parse_interchange(body, EDI)
    assert msg.text == "zie 'UNA+x"


def test_two_messages() -> None:
    first, second = parse("medvri-two-messages.edi")
    assert first.identifier.value == "HA2602050007/1"
    assert second.identifier.value == "HA2602050007/2"
    assert first.identifier.system == second.identifier.system == "urn:wijkbrug:edifact:01234567"
    assert (first.care_type, second.care_type) == (CareType.MEDICATIE, CareType.OUDERENZORG)
    assert first.patient == Patient("999990044", "1072GD", "Anna Visser", date(1933, 1, 20))
    assert second.patient == Patient("999990056", "1072CM", "Kees Smit", date(1948, 5, 2))
    assert first.text == "Graag medicatie uitzetten in baxterrol, start maandag."
    assert second.text == "Zorgvraag in kaart brengen, woont alleen, valt vaak."
    assert second.priority is Priority.ROUTINE
    assert first.sent == datetime(2026, 2, 5, 10, 55, tzinfo=AMS)
    assert second.sent == datetime(2026, 2, 5, 10, 58, tzinfo=AMS)


def test_reposting_gives_the_same_identifiers() -> None:
    again = [m.identifier for m in parse("medvri-two-messages.edi")]
    assert again == [m.identifier for m in parse("medvri-two-messages.edi")]


def test_unoc_latin1() -> None:
    body = load("medvri-unoc-latin1.edi")
    assert "Zoë".encode("latin-1") in body  # the file really is ISO 8859-1
    [msg] = parse_interchange(body, EDI)
    assert msg.patient.name == "Zoë Hoekstra-Brouwer"
    assert msg.sender == Party(
        name="Dr. Zoë Ruïz", organisation_name="Praktijk Café Oost", agb="01234570"
    )
    assert msg.text == (
        "Patiënte heeft een geïnfecteerde wond aan de rechterhiel.\n"
        "Eén keer per dag verbinden; crème volgens voorschrift."
    )


def test_hard_wrapped_file() -> None:
    """Files wrapped at 80 columns, also inside segments, read as if unwrapped."""
    assert b"Ba\r\nkker" in load("medvri-hard-wrapped.edi")
    [msg] = parse("medvri-hard-wrapped.edi")
    assert msg.patient.name == "Geertruida Bakker-Jansen"
    assert msg.text == "Wond is goed genezen, wondzorg kan na vrijdag worden afgesloten."


# ---------------------------------------------------------------- character sets


def test_unoc_reads_windows_1252_quotes_and_euro() -> None:
    body = letter(txt=("TXT+it\x92s \x80 5, \x93ja\x94",), syntax="UNOC:3")
    [msg] = parse_interchange(body, EDI)
    assert msg.text == "it’s € 5, “ja”"


def test_unow_is_utf8() -> None:
    body = letter(txt=("TXT+Zoë Łukasz",), syntax="UNOW:4", encoding="utf-8")
    [msg] = parse_interchange(body, EDI)
    assert msg.text == "Zoë Łukasz"


def test_unoa_with_latin1_bytes_is_refused_at_its_place() -> None:
    error = failure(letter(txt=("TXT+Zoë",)))
    assert places(error) == [(ErrorCode.INVALID, "TXT", 6, 1, None, None)]


def test_control_characters_are_refused() -> None:
    error = failure(letter(txt=("TXT+a\x00b",)))
    assert places(error) == [(ErrorCode.INVALID, "TXT", 6, 1, None, None)]


def test_unknown_syntax_identifier() -> None:
    error = failure(letter(syntax="UNOX:1"))
    assert places(error) == [(ErrorCode.VALUE, "UNB", 1, 1, 1, None)]


def test_other_service_characters() -> None:
    body = (
        b"UNA|*.\\ ~UNB*UNOA|1*01234567*500099001*260125|0930*C1~UNH*1*MEDVRI|1~"
        b"GGA*M. de Vries~PID*1941|03|12*V*||Bakker**BSN999990019~PAD*||||1074AB~"
        b"TXT*a\\|b\\*c\\\\d\\~e~UNT*6*1~UNZ*1*C1~"
    )
    [msg] = parse_interchange(body, EDI)
    assert msg.text == "a|b*c\\d~e"
    assert msg.patient.name == "Bakker"


def test_una_must_set_distinct_characters_and_a_release_character() -> None:
    for una in (b"UNA::.? '", b"UNA:+.  '", b"UNA:+"):
        error = failure(una + letter())
        assert places(error) == [(ErrorCode.INVALID, "UNA", None, None, None, None)]


# ---------------------------------------------------------------- care type and priority


@pytest.mark.parametrize(
    ("line", "care_type"),
    [
        ("TXT+Zorgsoort?: ggz", CareType.GGZ),
        ("TXT+zorgsoort: Palliatieve zorg", CareType.PALLIATIEVE_ZORG),  # unreleased colon
        ("TXT+ZORGSOORT ?: palliatieve-zorg", CareType.PALLIATIEVE_ZORG),
        ("TXT+Zorgsoort?: Medicatie", CareType.MEDICATIE),
    ],
)
def test_care_type_line(line: str, care_type: CareType) -> None:
    [msg] = parse_interchange(letter(txt=(line, TXT)), EDI)
    assert msg.care_type is care_type
    assert msg.text == "Graag wondcontrole."


@pytest.mark.parametrize(
    ("word", "priority"),
    [("spoed", Priority.URGENT), ("Z.S.M.", Priority.ASAP), ("direct", Priority.STAT)],
)
def test_priority_line(word: str, priority: Priority) -> None:
    [msg] = parse_interchange(letter(txt=(f"TXT+Urgentie?: {word}", TXT)), EDI)
    assert msg.priority is priority


def test_header_lines_only_count_at_the_start() -> None:
    [msg] = parse_interchange(letter(txt=(TXT, "TXT+Zorgsoort?: ggz")), EDI)
    assert msg.care_type is CareType.WIJKVERPLEGING
    assert msg.text == "Graag wondcontrole.\nZorgsoort: ggz"


def test_unknown_care_type_and_priority() -> None:
    error = failure(letter(txt=("TXT+Zorgsoort?: huishouden", "TXT+Urgentie?: morgen", TXT)))
    assert places(error) == [
        (ErrorCode.VALUE, "TXT", 6, 1, None, 1),
        (ErrorCode.VALUE, "TXT", 7, 1, None, 1),
    ]
    assert "huishouden" not in json.dumps(edifact_medvri.error_response(error))


def test_two_care_types() -> None:
    error = failure(letter(txt=("TXT+Zorgsoort?: ggz", "TXT+Zorgsoort?: medicatie", TXT)))
    assert places(error) == [(ErrorCode.INVALID, "TXT", 7, 1, None, 1)]


# ---------------------------------------------------------------- broken interchanges


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broken-missing-unt.edi", [(ErrorCode.INVALID, "UNZ", 7, None, None, None)]),
        ("broken-segment-count.edi", [(ErrorCode.INVALID, "UNT", 7, 1, None, None)]),
        ("broken-bad-bsn.edi", [(ErrorCode.VALUE, "PID", 5, 5, None, 1)]),
        ("broken-truncated.edi", [(ErrorCode.INVALID, "TXT", 7, 1, 1, None)]),
    ],
)
def test_broken_files(name: str, expected: list[tuple[Any, ...]]) -> None:
    error = failure(load(name))
    assert error.status == 400
    assert places(error) == expected
    assert_no_patient_data(error)


def test_error_response_shape() -> None:
    error = failure(load("broken-bad-bsn.edi"))
    assert edifact_medvri.error_response(error) == {
        "error": "the BSN fails the 11-test",
        "code": "value",
        "status": 400,
        "segment": "PID",
        "segment_index": 5,
        "element": 5,
        "message_number": 1,
        "issues": [
            {
                "error": "the BSN fails the 11-test",
                "code": "value",
                "segment": "PID",
                "segment_index": 5,
                "element": 5,
                "message_number": 1,
            }
        ],
    }
    assert error.all_issues()[0].expression == "message 1, segment 5 (PID), element 5"


def test_error_response_of_a_plain_wijkbrug_error() -> None:
    body = edifact_medvri.error_response(WijkbrugError(ErrorCode.NOT_SUPPORTED, "nope"))
    assert body == {
        "error": "nope",
        "code": "not-supported",
        "status": 415,
        "issues": [{"error": "nope", "code": "not-supported"}],
    }


def test_every_issue_of_every_message_at_once() -> None:
    body = (
        "UNB+UNOA:1+01234567+500099001+260125:0930+C1'"
        f"UNH+1+MEDVRI:1'{GGA}'PID+1941:03:12+V+::Bakker++BSN999990018'{PAD}'{TXT}'UNT+6+1'"
        f"UNH+2+MEDVRI:1'{GGA}'{PID}'PAD+::::B-1000'{TXT}'UNT+6+2'"
        "UNZ+2+C1'"
    ).encode()
    error = failure(body)
    assert error.message == "2 problems"
    assert places(error) == [
        (ErrorCode.VALUE, "PID", 4, 5, None, 1),
        (ErrorCode.VALUE, "PAD", 11, 1, 5, 2),
    ]
    assert_no_patient_data(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # required segments and values
        (interchange(GGA, PAD, TXT), [(ErrorCode.REQUIRED, "PID", None, None, None, 1)]),
        (interchange(GGA, PID, TXT), [(ErrorCode.REQUIRED, "PAD", None, None, None, 1)]),
        (interchange(PID, PAD, TXT), [(ErrorCode.REQUIRED, "GGA", None, None, None, 1)]),
        (interchange(GGA, PID, PAD), [(ErrorCode.REQUIRED, "TXT", None, None, None, 1)]),
        (letter(txt=("TXT+",)), [(ErrorCode.REQUIRED, "TXT", None, None, None, 1)]),
        (interchange("GGA++Praktijk", PID, PAD, TXT), [(ErrorCode.REQUIRED, "GGA", 3, 1, None, 1)]),
        (
            interchange(GGA, "PID+1941:03:12+V+::Bakker", PAD, TXT),
            [(ErrorCode.REQUIRED, "PID", 4, 5, None, 1)],
        ),
        (
            interchange(GGA, PID, "PAD+Straat:1::Amsterdam", TXT),
            [(ErrorCode.REQUIRED, "PAD", 5, 1, 5, 1)],
        ),
        # wrong values
        (
            interchange(GGA, "PID+1941:03:12+V+::Bakker++BSN12345", PAD, TXT),
            [(ErrorCode.VALUE, "PID", 4, 5, None, 1)],
        ),
        (
            interchange(GGA, "PID+1941:02:30+V+::Bakker++BSN999990019", PAD, TXT),
            [(ErrorCode.VALUE, "PID", 4, 1, None, 1)],
        ),
        (letter("DET+26:13:01+09:00"), [(ErrorCode.VALUE, "DET", 6, None, None, 1)]),
        (letter(sender="5000991"), [(ErrorCode.VALUE, "UNB", 1, 2, 1, None)]),
        # structure
        (letter(GGA), [(ErrorCode.INVALID, "GGA", 6, None, None, 1)]),
        (letter("ZKH+Ziekenhuis"), [(ErrorCode.INVALID, "ZKH", 6, None, None, 1)]),
        (letter("txt+x"), [(ErrorCode.INVALID, None, 6, None, None, None)]),
        (letter(txt=("TXT+Mevr. O'Brien komt",)), [(ErrorCode.INVALID, None, 7, None, None, None)]),
        (letter().replace(b"MEDVRI", b"MEDLAB"), [(ErrorCode.VALUE, "UNH", 2, 2, 1, None)]),
        (letter().replace(b"UNZ+1+", b"UNZ+2+"), [(ErrorCode.INVALID, "UNZ", 8, 1, None, None)]),
        (
            letter().replace(b"UNZ+1+C1", b"UNZ+1+C2"),
            [(ErrorCode.INVALID, "UNZ", 8, 2, None, None)],
        ),
        (letter().replace(b"UNT+6+1", b"UNT+6+2"), [(ErrorCode.INVALID, "UNT", 7, 2, None, None)]),
        (letter() + b"UNH+1+MEDVRI:1'", [(ErrorCode.INVALID, "UNH", 9, None, None, None)]),
        (letter().replace(b"UNZ+1+C1'", b""), [(ErrorCode.INVALID, "UNZ", None, None, None, None)]),
        (
            letter().replace(b"UNZ+1+C1'", b"")
            + b"UNH+1+MEDVRI:1'"
            + b"'".join(s.encode() for s in (GGA, PID, PAD, TXT))
            + b"'UNT+6+1'UNZ+2+C1'",
            [(ErrorCode.INVALID, "UNH", 8, 1, None, None)],
        ),
        (b"UNH+1+MEDVRI:1'", [(ErrorCode.INVALID, "UNH", 1, None, None, None)]),
        (b"UNB'", [(ErrorCode.REQUIRED, "UNB", 1, 1, 1, None)]),
        (b"", [(ErrorCode.REQUIRED, "UNB", None, None, None, None)]),
        (
            b"UNB+UNOA:1+01234567+x+260125:0930+C1'UNG+X'UNZ+0+C1'",
            [
                (ErrorCode.INVALID, "UNG", 2, None, None, None),
                (ErrorCode.REQUIRED, "UNH", None, None, None, None),
            ],
        ),
        (
            b"UNB+UNOA:1+01234567+x+260125:0930+C1'UNZ+0+C1'UNA:+.? '",
            [(ErrorCode.INVALID, "UNA", 3, None, None, None)],
        ),
        (
            b"UNB+UNOA:1+01234567+x+260125:0930+C1'TXT+los'UNZ+0+C1'",
            [
                (ErrorCode.INVALID, "TXT", 2, None, None, None),
                (ErrorCode.REQUIRED, "UNH", None, None, None, None),
            ],
        ),
        (
            b"UNB+UNOA:1+01234567+x+261325:0930+C1'UNZ+0+C1'",
            [
                (ErrorCode.VALUE, "UNB", 1, 4, None, None),
                (ErrorCode.REQUIRED, "UNH", None, None, None, None),
            ],
        ),
    ],
)
def test_bad_interchanges_name_their_place(body: bytes, expected: list[tuple[Any, ...]]) -> None:
    error = failure(body)
    assert error.status == 400
    assert places(error) == expected
    assert_no_patient_data(error)


# ---------------------------------------------------------------- rendering


NOW = datetime(2026, 1, 25, 13, 6, tzinfo=UTC)
PATIENT = Patient(
    bsn="999990019",
    postcode="1074AB",
    name="Geertruida Bakker-Jansen",
    birth_date=date(1941, 3, 12),
)
NURSE = Party(
    name="Fatima el Amrani", organisation_name="Thuiszorg Amstel", matrix_id="@fatima:wijkbrug.test"
)


def reply(text: str = "Wond bekeken, verband gewisseld.", **changes: Any) -> Reply:
    base = Reply(
        id="comm-2",
        in_response_to="comm-1",
        case_number="W-2026-0042",
        care_type=CareType.WONDZORG,
        sender=NURSE,
        text=text,
        sent=datetime(2026, 1, 25, 13, 5, tzinfo=UTC),
        patient=PATIENT,
    )
    return replace(base, **changes)


def render(r: Reply, **changes: Any) -> bytes:
    kwargs: dict[str, Any] = {
        "sender_id": "75012345",
        "recipient_agb": "01234567",
        "control_ref": "WB000042",
        "now": NOW,
        "recipient_name": "Huisartsenpraktijk De Pijp",
    }
    kwargs.update(changes)
    return render_reply(r, **kwargs)


def test_render_reply_golden() -> None:
    text = (
        "Beste dokter,\n\nGezien: 3+4 cm; rand rood? Ja, 's ochtends: Aquacel. Crème aangebracht."
    )
    assert render(reply(text)) == (
        "UNA:+.? '\n"
        "UNB+UNOC:3+75012345+01234567+260125:1406+WB000042'\n"
        "UNH+WB000042+MEDVRI:1'\n"
        "GGA+Fatima el Amrani++Thuiszorg Amstel'\n"
        "DET+26:01:25+14:05'\n"
        "PID+1941:03:12++::Geertruida Bakker-Jansen++BSN999990019'\n"
        "PAD+::::1074AB'\n"
        "TXT+Zorgsoort?: wondzorg'\n"
        "TXT+Casus?: W-2026-0042'\n"
        "TXT+'\n"
        "TXT+Beste dokter,'\n"
        "TXT+'\n"
        "TXT+Gezien?: 3?+4 cm; rand rood?? Ja, ?'s ochtends?: Aquacel. Crème'\n"
        "TXT+aangebracht.'\n"
        "GGO+Huisartsenpraktijk De Pijp'\n"
        "UNT+14+WB000042'\n"
        "UNZ+1+WB000042'\n"
    ).encode("latin-1")


def test_render_reply_reads_back() -> None:
    text = "Beste dokter,\n\nGezien: 3+4 cm; rand rood? Ja, 's ochtends. Crème aangebracht."
    [msg] = parse_interchange(render(reply(text)), EDI)
    assert msg.identifier.value == "WB000042/WB000042"
    assert msg.identifier.system == "urn:wijkbrug:edifact:75012345"
    assert msg.care_type is CareType.WONDZORG
    assert msg.patient == PATIENT
    assert msg.sender == Party(
        name="Fatima el Amrani", organisation_name="Thuiszorg Amstel", agb="75012345"
    )
    assert msg.text == f"Casus: W-2026-0042\n\n{text}"
    assert msg.sent == datetime(2026, 1, 25, 14, 5, tzinfo=AMS)


def test_render_reply_wraps_at_70_and_counts_segments() -> None:
    text = " ".join(["verbandwissel"] * 40) + "\n" + "x" * 150
    out = render(reply(text)).decode("latin-1")
    lines = [line[4:-1] for line in out.splitlines() if line.startswith("TXT+")]
    assert all(len(line) <= edifact_medvri.TXT_WIDTH for line in lines)
    assert "x" * 70 in lines
    segments = out.splitlines()
    unh, unt = (
        segments.index("UNH+WB000042+MEDVRI:1'"),
        next(i for i, s in enumerate(segments) if s.startswith("UNT+")),
    )
    assert segments[unt] == f"UNT+{unt - unh + 1}+WB000042'"


def test_render_reply_without_patient_or_organisation() -> None:
    out = render(
        reply(patient=None, case_number="", sender=Party(name="Fatima el Amrani")),
        recipient_name=None,
    ).decode("latin-1")
    assert "PID+" not in out
    assert "PAD+" not in out
    assert "Casus" not in out
    assert "GGA+Fatima el Amrani'\n" in out
    assert "GGO+AGB 01234567'\n" in out
    assert "UNT+8+WB000042'" in out


def test_render_reply_transliterates_outside_latin1() -> None:
    out = render(reply("Łukasz zegt “oké” – 5 € … ő\u200b")).decode("latin-1")
    assert 'TXT+??ukasz zegt "oké" - 5 EUR ... o\'' in out


def test_render_reply_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        render(reply(), recipient_agb="123")
    with pytest.raises(ValueError):
        render(reply(), control_ref="has space")
    with pytest.raises(ValueError):
        render(reply(), sender_id="")


def test_render_reply_naive_datetimes_are_utc() -> None:
    out = render(reply(sent=datetime(2026, 7, 1, 10, 0)), now=datetime(2026, 7, 1, 10, 1))
    assert b"260701:1201" in out  # CEST
    assert b"DET+26:07:01+12:00'" in out


# ---------------------------------------------------------------- properties

LATIN1_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF).filter(
        lambda c: not "\x7f" <= c <= "\x9f"
    )
    | st.sampled_from("'+:?\n"),
    max_size=400,
).filter(lambda s: s.strip() != "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LATIN1_TEXT)
def test_property_render_then_parse_keeps_the_text(text: str) -> None:
    [msg] = parse_interchange(render(reply(text, case_number="")), EDI)

    def squeeze(value: str) -> str:
        return re.sub(r"\s+", "", value)

    assert squeeze(msg.text) == squeeze(text)
    assert msg.patient == PATIENT


def only_wijkbrug_errors(body: bytes) -> None:
    try:
        result = parse_interchange(body, EDI)
    except WijkbrugError as error:
        assert 400 <= error.status < 500
        response = edifact_medvri.error_response(error)
        json.dumps(response)
        for issue in error.all_issues():
            assert isinstance(issue, EdifactIssue)
    else:
        assert all(isinstance(m, CaseMessage) for m in result)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes_raise_only_wijkbrug_errors(body: bytes) -> None:
    only_wijkbrug_errors(body)


SEEDS = [load(name) for name in sorted(p.name for p in DATA.glob("*.edi"))]
NOISE = st.binary(min_size=1, max_size=4) | st.sampled_from(
    [
        b"'",
        b"+",
        b":",
        b"?",
        b"UNA",
        b"UNH+9+MEDVRI:1'",
        b"UNT+1+1'",
        b"TXT:1+",
        b"\xe9",
        b"\x00",
        b"\r\n",
    ]
)


@st.composite
def mutated(draw: Callable[..., Any]) -> bytes:
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(body)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        if action == "insert":
            body[at:at] = draw(NOISE)
        elif action == "delete":
            del body[at : at + draw(st.integers(1, 8))]
        elif action == "replace":
            body[at : at + 1] = draw(NOISE)
        else:
            del body[at:]
    return bytes(body)


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_property_mutated_interchanges_raise_only_wijkbrug_errors(body: bytes) -> None:
    only_wijkbrug_errors(body)
