"""The fhir-r4 dialect, the R4B door and the conformance folder, on real Nictiz examples.

Golden inputs are the Nictiz R4 zib2020 examples in shared/fixtures: their Patient and
practitioners are contained into a Communication, sent as JSON and as XML, and the
parsed CaseMessage is compared field by field. Every bad input must name its place
(FHIRPath) and must never repeat the BSN or the message text.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree  # type: ignore[import-untyped]

from adapters import fhir_r4
from bridge import conformance, fhirmodel
from bridge.canonical import CareType, CaseMessage, Party, Patient, Priority, Reply
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import (
    AGB_SYSTEM,
    BIG_SYSTEM,
    BSN_SYSTEM,
    CASE_SYSTEM,
    MATRIX_SYSTEM,
    MESSAGE_SYSTEM,
    URA_SYSTEM,
)
from tests.support.bundles import (
    FHIR_NS,
    JSON,
    NICTIZ,
    NICTIZ_BSN,
    REPO,
    SENDER_ID,
    TEXT,
    XML,
    Json,
)
from tests.support.issues import only, rejected

# The Nictiz examples are copied unchanged from shared/fixtures (CC0; source and commit in
# tests/data/nictiz/README.md), so that the golden tests never depend on a folder outside
# the repository; tests/support/bundles.py names their place and the shared constants.
EXAMPLE = REPO / "fhir" / "examples" / "Communication-wondzorg-example.json"


# ---------------------------------------------------------------- building inputs


def nictiz(name: str, local_id: str) -> Json:
    """A Nictiz example as FHIR JSON, ready to be contained (local id, no narrative)."""
    resource, issues = fhirmodel.load_xml((NICTIZ / f"{name}.xml").read_bytes())
    assert issues == []
    resource["id"] = local_id
    resource.pop("text", None)  # dom-1: contained resources carry no narrative
    return resource


def communication(*contained: Json, sender: str = "#gp", **extra: Any) -> Json:
    out: Json = {
        "resourceType": "Communication",
        "contained": list(contained),
        "identifier": [{"system": SENDER_ID, "value": "msg-1"}],
        "status": "in-progress",
        "category": [
            {
                "coding": [
                    {"system": "https://wijkbrug.nl/fhir/CodeSystem/care-type", "code": "wondzorg"}
                ]
            }
        ],
        "subject": {"reference": "#patient"},
        "sent": "2026-11-25T09:30:00+01:00",
        "sender": {"reference": sender},
        "payload": [{"contentString": TEXT}],
    }
    out.update(extra)
    return out


def golden() -> Json:
    """Nictiz Patient-01 and the AGB practitioner of the SOAP report example."""
    return communication(
        nictiz("nl-core-Patient-01", "patient"),
        nictiz("nl-core-SOAPReport-01-Practitioner-01", "gp"),
    )


def as_json(resource: Json) -> bytes:
    return json.dumps(resource, ensure_ascii=False).encode()


def nictiz_xml(name: str, local_id: str) -> Any:
    """A Nictiz example as an XML element, ready to be contained."""
    root = etree.fromstring((NICTIZ / f"{name}.xml").read_bytes())
    root.find(f"{{{FHIR_NS}}}id").set("value", local_id)
    root.remove(root.find(f"{{{FHIR_NS}}}text"))
    return root


def xml_communication(*contained: Any) -> bytes:
    """The golden Communication written by hand in XML, with the Nictiz XML inside."""
    head = f"""<Communication xmlns="{FHIR_NS}">
      <identifier><system value="{SENDER_ID}"/><value value="msg-1"/></identifier>
      <status value="in-progress"/>
      <category><coding>
        <system value="https://wijkbrug.nl/fhir/CodeSystem/care-type"/><code value="wondzorg"/>
      </coding></category>
      <subject><reference value="#patient"/></subject>
      <sent value="2026-11-25T09:30:00+01:00"/>
      <sender><reference value="#gp"/></sender>
      <payload><contentString value="{TEXT}"/></payload>
    </Communication>"""
    root = etree.fromstring(head.encode())
    for index, element in enumerate(contained):
        holder = etree.Element(f"{{{FHIR_NS}}}contained")
        holder.append(element)
        root.insert(index, holder)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def problems(body: bytes, content_type: str = JSON) -> list[Issue]:
    """The issues of a rejected message; they must not repeat patient data."""
    issues = rejected(
        lambda: fhir_r4.parse_communication(body, content_type),
        (NICTIZ_BSN, "999911120", "999911121", TEXT, "Johanna", "tandzorg"),
    )
    return issues


# ---------------------------------------------------------------- golden: JSON and XML


def assert_golden(msg: CaseMessage) -> None:
    assert msg.identifier.system == SENDER_ID and msg.identifier.value == "msg-1"
    assert msg.care_type is CareType.WONDZORG
    assert msg.patient == Patient(
        bsn=NICTIZ_BSN,
        postcode="1012NX",
        name="Johanna Petronella Maria van Putten-van der Giessen",
        birth_date=date(1934, 4, 28),
    )
    assert msg.sender.name == "H.A. Janszens" and msg.sender.agb == "01999999"
    assert msg.text == TEXT
    assert msg.priority is Priority.ROUTINE
    assert msg.sent == datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    assert msg.recipient_ura is None


def test_nictiz_golden_json() -> None:
    resource = golden()
    msg = fhir_r4.parse_communication(as_json(resource), JSON)
    assert_golden(msg)
    assert msg.resource == resource  # kept as sent: nothing re-formatted


def test_nictiz_golden_xml() -> None:
    body = xml_communication(
        nictiz_xml("nl-core-Patient-01", "patient"),
        nictiz_xml("nl-core-SOAPReport-01-Practitioner-01", "gp"),
    )
    msg = fhir_r4.parse_communication(body, XML)
    assert_golden(msg)
    # The XML becomes the same FHIR JSON as the JSON form of the same message.
    assert msg.resource == golden()


@pytest.mark.parametrize("content_type", ["application/xml", "application/fhir+xml; charset=utf-8"])
def test_xml_media_types(content_type: str) -> None:
    body = fhir_r4.to_xml(golden())
    assert_golden(fhir_r4.parse_communication(body, content_type))


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/fhir+json;fhirVersion=4.0", ""]
)
def test_json_media_types(content_type: str) -> None:
    assert_golden(fhir_r4.parse_communication(as_json(golden()), content_type))


def test_nictiz_practitioner_role_with_contained_organization() -> None:
    role = nictiz("nl-core-SOAPReport-01-PractitionerRole-01", "role")
    role["practitioner"]["reference"] = "#gp"
    role["organization"] = {"reference": "#org"}
    resource = communication(
        nictiz("nl-core-Patient-01", "patient"),
        nictiz("nl-core-SOAPReport-01-Practitioner-01", "gp"),
        nictiz("nl-core-HealthcareProvider-Organization-01", "org"),
        role,
        sender="#role",
    )
    msg = fhir_r4.parse_communication(as_json(resource), JSON)
    assert msg.sender == Party(
        name="H.A. Janszens",
        agb="01999999",
        organisation_name="Erasmus Universitair Medisch Centrum",
        organisation_ura="06020806",
    )


def test_nictiz_organization_as_recipient() -> None:
    resource = golden()
    resource["contained"].append(nictiz("nl-core-HealthcareProvider-Organization-01", "to"))
    resource["recipient"] = [{"reference": "#to"}]
    assert fhir_r4.parse_communication(as_json(resource), JSON).recipient_ura == "06020806"


def test_logical_references_and_oids() -> None:
    resource = communication(nictiz("nl-core-Patient-01", "patient"))
    patient = resource["contained"][0]
    patient["identifier"][0]["system"] = "urn:oid:2.16.840.1.113883.2.4.6.3"
    resource["sender"] = {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.2.4.6.1", "value": "01234567"},
        "display": "A. Jansen",
    }
    resource["recipient"] = [
        {"identifier": {"system": URA_SYSTEM, "value": "12345678"}, "display": "Thuiszorg Oost"}
    ]
    resource["priority"] = "urgent"
    msg = fhir_r4.parse_communication(as_json(resource), JSON)
    assert msg.patient.bsn == NICTIZ_BSN
    assert msg.sender == Party(name="A. Jansen", agb="01234567")
    assert msg.recipient_ura == "12345678"
    assert msg.priority is Priority.URGENT


def test_big_and_uzi_are_kept_beside_the_agb() -> None:
    resource = golden()
    gp = resource["contained"][1]
    gp["identifier"].append({"system": BIG_SYSTEM, "value": "21870932"})
    msg = fhir_r4.parse_communication(as_json(resource), JSON)
    assert [(i.system, i.value) for i in msg.sender.identifiers] == [(BIG_SYSTEM, "21870932")]


def test_wijkbrug_example_parses() -> None:
    msg = fhir_r4.parse_communication(EXAMPLE.read_bytes(), JSON)
    assert msg.care_type is CareType.WONDZORG
    assert msg.patient.bsn == "999911120" and msg.patient.postcode == "1092AB"
    assert msg.sender.name == "A. Jansen" and msg.sender.agb == "01234567"
    assert msg.sender.organisation_name == "Huisartsenpraktijk De Pijp"
    assert msg.identifier.system == "urn:oid:2.16.528.1.1007.3.3.01234567.1"


# ---------------------------------------------------------------- bad input


def test_malformed_json_says_where_not_what() -> None:
    issue = only(problems(b'{"resourceType": "Communication",\n "status": 999911120x}'))
    assert issue.code is ErrorCode.INVALID
    assert "malformed JSON at line 2 column" in issue.diagnostics


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"[]", "JSON object"),
        (b'{"a": 1, "a": 2}', "repeats"),
        (b'{"a": NaN}', "NaN"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_not_a_json_resource(body: bytes, words: str) -> None:
    issue = only(problems(body))
    assert issue.code is ErrorCode.INVALID and words in issue.diagnostics


def test_malformed_xml_says_where() -> None:
    issue = only(problems(b"<Communication xmlns='http://hl7.org/fhir'>\n<status>", XML))
    assert issue.code is ErrorCode.INVALID
    assert re.match(r"malformed XML at line \d+ column \d+$", issue.diagnostics)


def test_xml_with_a_doctype_or_entities_is_refused() -> None:
    internal = b"""<?xml version="1.0"?>
<!DOCTYPE Communication [<!ENTITY x "completed">]>
<Communication xmlns="http://hl7.org/fhir"><status value="&x;"/></Communication>"""
    issue = only(problems(internal, XML))
    assert issue.code is ErrorCode.INVALID and "DOCTYPE" in issue.diagnostics
    external = internal.replace(b'"completed"', b'SYSTEM "file:///etc/passwd"')
    issue = only(problems(external, XML))
    assert issue.code is ErrorCode.INVALID and "root:" not in issue.diagnostics


def test_wrong_resource_type_is_named() -> None:
    issue = only(problems(as_json(nictiz("nl-core-Patient-01", "p"))))
    assert issue.code is ErrorCode.INVALID
    assert issue.diagnostics == "expected a Communication, got a Patient"
    assert issue.expression == "Communication.resourceType"
    xml = only(problems((NICTIZ / "nl-core-Patient-01.xml").read_bytes(), XML))
    assert xml.diagnostics == "expected a Communication, got a Patient"
    bundle = only(problems(b'{"resourceType": "Bundle", "type": "collection"}'))
    assert "Bundle" in bundle.diagnostics
    unknown = only(problems(b'{"resourceType": "111222333"}'))
    assert "unknown resource type" in unknown.diagnostics


def test_unsupported_media_type() -> None:
    with pytest.raises(WijkbrugError) as caught:
        fhir_r4.parse_communication(as_json(golden()), "text/plain")
    assert caught.value.code is ErrorCode.NOT_SUPPORTED and caught.value.status == 415
    for header in (
        "application/fhir+json; charset=latin-1",
        "application/fhir+json; fhirVersion=3.0",
    ):
        with pytest.raises(WijkbrugError) as caught:
            fhir_r4.parse_communication(as_json(golden()), header)
        assert caught.value.code is ErrorCode.NOT_SUPPORTED


Mutation = Callable[[Json], None]


def _set_bsn(value: str) -> Mutation:
    def mutate(resource: Json) -> None:
        resource["contained"][0]["identifier"][0]["value"] = value

    return mutate


def _set(path: str, value: Any) -> Mutation:
    """Set (or, for None, delete) an element by a dotted path with list indexes."""

    def mutate(resource: Json) -> None:
        node: Any = resource
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        for part in parts[:-1]:
            node = node[part]
        if value is None:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "code", "expression", "words"),
    [
        (
            _set_bsn("999911121"),
            ErrorCode.VALUE,
            "Communication.contained[0].identifier[0].value",
            "11-test",
        ),
        (
            _set("contained.0.identifier.0.system", "http://example.org/mrn"),
            ErrorCode.REQUIRED,
            "Communication.contained[0].identifier",
            BSN_SYSTEM,
        ),
        (
            _set("category.0.coding.0.code", "tandzorg"),
            ErrorCode.VALUE,
            "Communication.category[0].coding[0].code",
            "wijkverpleging, wondzorg, palliatieve-zorg, ouderenzorg, ggz, medicatie",
        ),
        (_set("category", None), ErrorCode.REQUIRED, "Communication.category", "care-type"),
        (_set("payload", None), ErrorCode.REQUIRED, "Communication.payload", "contentString"),
        (
            _set("payload.0.contentString", "   "),
            ErrorCode.REQUIRED,
            "Communication.payload[0].contentString",
            "blank",
        ),
        (
            _set("payload.0", {"contentAttachment": {"url": "https://x.example/a.pdf"}}),
            ErrorCode.REQUIRED,
            "Communication.payload[0].contentString",
            "payload[0].contentString",
        ),
        (
            _set("payload.0", {}),
            ErrorCode.INVALID,
            "Communication.payload[0]",
            "empty",
        ),
        (
            _set("subject", {"reference": "Patient/111222333"}),
            ErrorCode.INVALID,
            "Communication.subject.reference",
            "contained",
        ),
        (
            _set("subject", {"reference": "#nobody"}),
            ErrorCode.INVALID,
            "Communication.subject.reference",
            "not there",
        ),
        (
            _set("subject", {"reference": "#gp"}),
            ErrorCode.INVALID,
            "Communication.subject.reference",
            "not a Practitioner",
        ),
        (_set("subject", None), ErrorCode.REQUIRED, "Communication.subject", "Patient"),
        (
            _set("contained.0.address.0.postalCode", "B-1000"),
            ErrorCode.VALUE,
            "Communication.contained[0].address[0].postalCode",
            "Dutch postcode",
        ),
        (
            _set("contained.0.address", None),
            ErrorCode.REQUIRED,
            "Communication.contained[0].address",
            "postalCode",
        ),
        (
            _set("contained.1.identifier.0.value", "1999999"),
            ErrorCode.VALUE,
            "Communication.contained[1].identifier[0].value",
            "8 digits",
        ),
        (
            _set("contained.1.name", None),
            ErrorCode.REQUIRED,
            "Communication.contained[1].name",
            "name",
        ),
        (_set("sender", None), ErrorCode.REQUIRED, "Communication.sender", "AGB"),
        (
            _set("sender", {"reference": "Practitioner/123"}),
            ErrorCode.REQUIRED,
            "Communication.sender.identifier",
            "logical reference",
        ),
        (
            _set("sender", {"reference": "#patient"}),
            ErrorCode.INVALID,
            "Communication.sender.reference",
            "got a Patient",
        ),
        (_set("identifier", None), ErrorCode.REQUIRED, "Communication.identifier", "identifier"),
        (_set("priority", "hoog"), ErrorCode.VALUE, "Communication.priority", "routine, urgent"),
        (_set("status", "verzonden"), ErrorCode.VALUE, "Communication.status", "in-progress"),
        (_set("status", None), ErrorCode.REQUIRED, "Communication.status", "required"),
        (_set("sent", "2026-11-25T09:30:00"), ErrorCode.VALUE, "Communication.sent", "time zone"),
        (
            _set("favouriteColour", "blue"),
            ErrorCode.INVALID,
            "Communication.favouriteColour",
            "unknown",
        ),
        (
            _set("contained.0.favouriteColour", "blue"),
            ErrorCode.INVALID,
            "Communication.contained[0].favouriteColour",
            "unknown element",
        ),
        (
            _set("contained.0.name.0._given.0.extension.0.colour", "x"),
            ErrorCode.INVALID,
            "Communication.contained[0].name[0].given[0].extension[0].colour",
            "unknown element",
        ),
        (
            _set("contained.0.deceasedBoolean", "no"),
            ErrorCode.VALUE,
            "Communication.contained[0].deceasedBoolean",
            "boolean",
        ),
        (
            _set("contained.0.birthDate", "28-04-1934"),
            ErrorCode.VALUE,
            "Communication.contained[0].birthDate",
            "YYYY-MM-DD",
        ),
        (_set("contained.0.gender", None), None, None, None),  # gender is optional
        (_set("note", []), ErrorCode.INVALID, "Communication.note", "empty arrays"),
        (
            _set("recipient", [{"reference": "#patient"}]),
            ErrorCode.INVALID,
            "Communication.recipient[0].reference",
            "Organization",
        ),
        (
            _set("recipient", [{"identifier": {"system": URA_SYSTEM, "value": "123"}}]),
            ErrorCode.VALUE,
            "Communication.recipient[0].identifier.value",
            "8 digits",
        ),
        (
            _set("recipient", [{"display": "Thuiszorg Oost"}]),
            ErrorCode.REQUIRED,
            "Communication.recipient[0].identifier",
            "URA",
        ),
    ],
)
def test_rule_violations(
    mutate: Mutation, code: ErrorCode | None, expression: str | None, words: str | None
) -> None:
    resource = golden()
    mutate(resource)
    if code is None:
        fhir_r4.parse_communication(as_json(resource), JSON)
        return
    issue = only(problems(as_json(resource)))
    assert (issue.code, issue.expression) == (code, expression), issue
    assert words is not None and words in issue.diagnostics


def test_nictiz_practitioner_without_agb() -> None:
    resource = communication(
        nictiz("nl-core-Patient-01", "patient"),
        nictiz("nl-core-HealthProfessional-Practitioner-01", "gp"),  # BIG only
    )
    issue = only(problems(as_json(resource)))
    assert issue.code is ErrorCode.REQUIRED
    assert issue.expression == "Communication.contained[1].identifier"
    assert AGB_SYSTEM in issue.diagnostics


def test_all_problems_are_reported_at_once() -> None:
    resource = golden()
    _set_bsn("999911121")(resource)
    _set("category.0.coding.0.code", "tandzorg")(resource)
    _set("payload", None)(resource)
    _set("extra", True)(resource)
    issues = problems(as_json(resource))
    assert {i.expression for i in issues} == {
        "Communication.extra",
        "Communication.contained[0].identifier[0].value",
        "Communication.category[0].coding[0].code",
        "Communication.payload",
    }
    with pytest.raises(WijkbrugError) as caught:
        fhir_r4.parse_communication(as_json(resource), JSON)
    assert caught.value.status == 400 and caught.value.message == "4 problems"


def test_unknown_xml_element_has_its_path() -> None:
    body = fhir_r4.to_xml(golden()).replace(b"<status", b"<mood value='cheerful'/><status", 1)
    issue = only(problems(body, XML))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Communication.mood")
    nested = fhir_r4.to_xml(golden()).replace(b"<birthDate", b"<shoeSize value='41'/><birthDate")
    assert only(problems(nested, XML)).expression == "Communication.contained[0].shoeSize"


def test_bad_xml_primitive_values() -> None:
    body = fhir_r4.to_xml(golden()).replace(
        b'<deceasedBoolean value="false"/>', b'<deceasedBoolean value="nee"/>'
    )
    issue = only(problems(body, XML))
    assert (issue.code, issue.expression) == (
        ErrorCode.VALUE,
        "Communication.contained[0].deceasedBoolean",
    )


def test_duplicate_contained_ids() -> None:
    resource = golden()
    resource["contained"][1]["id"] = "patient"
    issues = problems(as_json(resource))
    assert any(i.expression == "Communication.contained[1].id" for i in issues)


# ---------------------------------------------------------------- rendering


NURSE = Party(
    name="Fatima el Amrani",
    organisation_name="Thuiszorg Oost",
    organisation_ura="12345678",
    matrix_id="@nurse1:zorg.example",
)
NOW = datetime(2026, 11, 25, 10, 15, 30, 123456, tzinfo=UTC)


def reply(**changes: Any) -> Reply:
    base = Reply(
        id="6f1c0a4e-0000-4000-8000-000000000001",
        in_response_to="6f1c0a4e-0000-4000-8000-000000000000",
        case_number="WB-000042",
        care_type=CareType.WONDZORG,
        sender=NURSE,
        text="Vanmiddag langs geweest, wond ziet er rustig uit.",
        sent=datetime(2026, 11, 25, 10, 15, tzinfo=UTC),
        patient=Patient(bsn="999911120", postcode="1092AB", name="J. de Vries"),
    )
    return Reply(**{**base.__dict__, **changes})


def contained(resource: Json, local_id: str) -> Json:
    found: list[Json] = [c for c in resource["contained"] if c["id"] == local_id]
    assert len(found) == 1
    return found[0]


def test_reply_is_a_valid_r4_communication() -> None:
    out = fhir_r4.render_reply(reply(), last_updated=NOW)
    assert fhirmodel.check(out) == []
    assert out["status"] == "completed"
    assert out["meta"] == {"versionId": "1", "lastUpdated": "2026-11-25T10:15:30.123456Z"}
    assert out["inResponseTo"] == [
        {"reference": "Communication/6f1c0a4e-0000-4000-8000-000000000000"}
    ]
    assert out["identifier"][0] == {"system": MESSAGE_SYSTEM, "value": reply().id}
    assert {"use": "secondary", "system": CASE_SYSTEM, "value": "WB-000042"} in out["identifier"]
    coding = out["category"][0]["coding"][0]
    assert (coding["code"], coding["display"]) == ("wondzorg", "Wondzorg")
    assert out["payload"] == [{"contentString": reply().text}]
    assert out["sent"] == "2026-11-25T10:15:00Z"
    patient = contained(out, out["subject"]["reference"][1:])
    assert patient["identifier"] == [{"system": BSN_SYSTEM, "value": "999911120"}]
    assert patient["address"][0]["postalCode"] == "1092 AB"
    role = contained(out, out["sender"]["reference"][1:])
    assert role["resourceType"] == "PractitionerRole"
    nurse = contained(out, role["practitioner"]["reference"][1:])
    assert {"system": MATRIX_SYSTEM, "value": "@nurse1:zorg.example"} in nurse["identifier"]
    assert nurse["name"] == [{"text": "Fatima el Amrani"}]
    organisation = contained(out, role["organization"]["reference"][1:])
    assert organisation["name"] == "Thuiszorg Oost"
    assert organisation["identifier"] == [{"system": URA_SYSTEM, "value": "12345678"}]


def test_reply_round_trips_through_r4b_and_xml() -> None:
    out = fhir_r4.render_reply(reply(), last_updated=NOW)
    assert fhirmodel.dump(fhirmodel.model(out)) == out
    xml = fhir_r4.to_xml(out)
    assert xml.startswith(b"<?xml") and b'xmlns="http://hl7.org/fhir"' in xml
    assert fhirmodel.load_xml(xml) == (out, [])
    assert fhirmodel.dump(fhirmodel.model_from_xml(xml)) == out


def test_reply_without_patient_or_organisation() -> None:
    nurse = Party(name="@nurse2:localhost", matrix_id="@nurse2:localhost")
    out = fhir_r4.render_reply(
        reply(patient=None, sender=nurse, in_response_to=""), last_updated=NOW
    )
    assert fhirmodel.check(out) == []
    assert "subject" not in out and "inResponseTo" not in out
    assert out["sender"]["reference"] == "#sender"
    assert [c["resourceType"] for c in out["contained"]] == ["Practitioner"]


def test_stored_communication_of_an_accepted_message() -> None:
    msg = fhir_r4.parse_communication(EXAMPLE.read_bytes(), JSON)
    out = fhir_r4.communication_for_case_message(
        msg, id="c-1", status="in-progress", last_updated=NOW, case_number="WB-000042"
    )
    assert fhirmodel.check(out) == []
    assert list(out)[:3] == ["resourceType", "id", "meta"]
    assert out["id"] == "c-1" and out["status"] == "in-progress"
    assert out["meta"]["versionId"] == "1"
    assert out["meta"]["lastUpdated"] == "2026-11-25T10:15:30.123456Z"
    assert out["meta"]["profile"] == msg.resource["meta"]["profile"]
    assert out["identifier"] == [
        {"system": "urn:oid:2.16.528.1.1007.3.3.01234567.1", "value": "msg-2026-0001"},
        {"use": "secondary", "system": CASE_SYSTEM, "value": "WB-000042"},
    ]
    # The sender's resource is untouched, and the stored one reads as the same message.
    assert msg.resource == json.loads(EXAMPLE.read_text("utf-8"))
    again = fhir_r4.parse_communication(as_json(out), JSON)
    assert (again.patient, again.sender, again.text) == (msg.patient, msg.sender, msg.text)
    xml = fhir_r4.to_xml(out)
    assert fhirmodel.load_xml(xml) == (out, [])


@pytest.mark.parametrize(
    ("accept", "format_param", "expected"),
    [
        (None, None, JSON),
        ("application/fhir+xml", None, XML),
        ("application/xml;q=0.9, application/fhir+json", None, JSON),
        ("application/fhir+json;q=0.5, application/fhir+xml", None, XML),
        ("text/html, */*;q=0.1", None, JSON),
        ("application/fhir+json", "xml", XML),
        ("application/fhir+xml", "json", JSON),
    ],
)
def test_response_media_type(accept: str | None, format_param: str | None, expected: str) -> None:
    assert fhir_r4.response_media_type(accept, format_param) == expected


def test_fhir_instant() -> None:
    assert fhir_r4.fhir_instant(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    dutch = datetime.fromisoformat("2026-01-02T04:04:05.5+01:00")
    assert fhir_r4.fhir_instant(dutch) == "2026-01-02T03:04:05.500000Z"


# ---------------------------------------------------------------- the R4B door


@pytest.mark.parametrize("path", sorted(NICTIZ.glob("*.xml")), ids=lambda p: p.stem)
def test_nictiz_examples_load_like_the_library_and_round_trip(path: Path) -> None:
    body = path.read_bytes()
    resource, issues = fhirmodel.load_xml(body)
    assert issues == [] and fhirmodel.check(resource) == []
    # Same FHIR JSON as fhir.resources' own XML reader (which keeps comments and
    # narrative whitespace that ours leaves out).
    library = fhirmodel.dump(
        get_fhir_model_class(resource["resourceType"]).model_validate_xml(body)
    )
    assert _without_narrative(library) == _without_narrative(resource)
    assert fhirmodel.dump(fhirmodel.model(resource)) == resource
    assert fhirmodel.load_xml(fhirmodel.dump_xml(resource)) == (resource, [])
    again = fhirmodel.load_json(json.dumps(resource).encode())
    assert fhirmodel.check(again) == []


def _without_narrative(node: Any) -> Any:
    """Drop narrative divs and the library's ``fhir_comments`` (XML comments)."""
    if isinstance(node, list):
        return [_without_narrative(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _without_narrative(v) for k, v in node.items() if k not in ("div", "fhir_comments")}
    return {k: v for k, v in out.items() if not (k.startswith("_") and v == {})}


def test_json_rules_the_library_does_not_check() -> None:
    patient: Json = {"resourceType": "Patient", "active": "true", "name": [{}], "telecom": []}
    assert {(i.code, i.expression) for i in fhirmodel.check(patient)} == {
        (ErrorCode.VALUE, "Patient.active"),
        (ErrorCode.INVALID, "Patient.name[0]"),
        (ErrorCode.INVALID, "Patient.telecom"),
    }
    aligned: Json = {
        "resourceType": "Patient",
        "name": [
            {
                "given": [None, "Jo"],
                "_given": [{"extension": [{"url": "x", "valueCode": "BR"}]}, None],
            }
        ],
    }
    assert fhirmodel.check(aligned) == []
    control: Json = {"resourceType": "Patient", "name": [{"text": "Jo\x00"}]}
    assert only(fhirmodel.check(control)).expression == "Patient.name[0].text"
    unknown: Json = {
        "resourceType": "Communication",
        "status": "completed",
        "contained": [{"resourceType": "Foo"}],
    }
    assert only(fhirmodel.check(unknown)).expression == "Communication.contained[0].resourceType"


def test_r4_resources_the_dialect_meets_are_the_r4b_shapes() -> None:
    # R4 (4.0.1) and R4B have the same elements for these; R4B only lacks valueMeta.
    for resource_type in (
        "Communication",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Bundle",
        "OperationOutcome",
    ):
        assert fhirmodel.is_resource_type(resource_type)
    assert not fhirmodel.is_resource_type("HumanName")
    extension: Json = {
        "resourceType": "Patient",
        "extension": [{"url": "x", "valueMeta": {"versionId": "1"}}],
    }
    assert only(fhirmodel.check(extension)).expression == "Patient.extension[0].valueMeta"


def test_operation_outcome_of_an_error_is_valid_r4() -> None:
    from bridge.errors import operation_outcome

    with pytest.raises(WijkbrugError) as caught:
        fhir_r4.parse_communication(b'{"resourceType": "Communication"}', JSON)
    outcome = operation_outcome(caught.value)
    assert fhirmodel.check(outcome) == []


def test_only_fhirmodel_imports_fhir_resources_and_never_the_r5_root() -> None:
    importing = set()
    for path in [*REPO.glob("bridge/**/*.py"), *REPO.glob("adapters/**/*.py")]:
        text = path.read_text("utf-8")
        for line in text.splitlines():
            match = re.match(
                r"\s*(?:from|import)\s+(fhir\.resources\S*)(?:\s+import\s+(\w+))?", line
            )
            if match:
                importing.add(path.relative_to(REPO).as_posix())
                module, name = match.group(1), match.group(2)
                allowed = ("fhir.resources.R4B", "fhir.resources.STU3")
                assert module.startswith(allowed) or name in ("R4B", "STU3"), (path, line)
    assert importing == {"bridge/fhirmodel.py"}


def test_parsing_loads_no_r5_model() -> None:
    code = (
        "import sys; from adapters import fhir_r4; "
        f"body = open({str(EXAMPLE)!r}, 'rb').read(); "
        "fhir_r4.parse_communication(body, 'application/fhir+json'); "
        "bad = [m for m in sys.modules if m.startswith('fhir.resources.') "
        "and not m.startswith('fhir.resources.R4B')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------- the conformance folder


def test_fhir_folder_is_data_not_a_package() -> None:
    assert not list((REPO / "fhir").rglob("__init__.py"))
    assert not list((REPO / "fhir").rglob("*.py"))


R4_RESOURCES = sorted(p for p in (REPO / "fhir").rglob("*.json") if "stu3" not in p.parts)


@pytest.mark.parametrize("path", R4_RESOURCES, ids=lambda p: p.name)
def test_every_conformance_resource_is_valid_r4(path: Path) -> None:
    resource = json.loads(path.read_text("utf-8"))
    assert fhirmodel.check(resource) == []
    assert path.stem.startswith(resource["resourceType"] + "-")
    assert fhirmodel.load_xml(fhirmodel.dump_xml(resource)) == (resource, [])


@pytest.mark.parametrize("path", sorted((REPO / "fhir" / "stu3").rglob("*.json")), ids=str)
def test_stu3_conformance_resources_are_valid_stu3(path: Path) -> None:
    resource = json.loads(path.read_text("utf-8"))
    assert fhirmodel.check_stu3(resource) == []
    assert resource["fhirVersion"] == "3.0.2"


def test_care_type_codesystem_matches_the_canonical_model() -> None:
    codesystem = conformance.care_type_codesystem()
    assert codesystem["url"] == "https://wijkbrug.nl/fhir/CodeSystem/care-type"
    concepts = {c["code"]: c["display"] for c in codesystem["concept"]}
    assert concepts == {c.value: c.display for c in CareType}
    assert all(c["definition"] for c in codesystem["concept"])
    assert codesystem["count"] == len(CareType)


def test_capability_statement() -> None:
    when = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    statement = conformance.capability_statement("https://wijkbrug.example/fhir/", now=when)
    assert statement["implementation"]["url"] == "https://wijkbrug.example/fhir"
    assert statement["date"] == "2026-11-25T11:00:00Z"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert rest["mode"] == "server" and "Bearer" in rest["security"]["description"]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == {
        "Communication",
        "Binary",
        "Organization",
        "HealthcareService",
        "PractitionerRole",
        "Endpoint",
    }
    assert [i["code"] for i in by_type["Binary"]["interaction"]] == ["read"]  # files
    for directory_type in set(by_type) - {"Communication", "Binary"}:
        codes = {i["code"] for i in by_type[directory_type]["interaction"]}
        assert codes == {"read", "search-type"}  # the directory is read-only
    communication_ = by_type["Communication"]
    assert {i["code"] for i in communication_["interaction"]} == {"read", "search-type", "create"}
    assert {p["name"] for p in communication_["searchParam"]} == {
        "_lastUpdated",
        "_count",
        "identifier",
        "status",
    }
    # POST [base] takes transaction and batch Bundles (see test_fhir_r4_bundles).
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    assert fhirmodel.check(statement) == []
    # Each call is a fresh copy.
    statement["rest"] = []
    assert conformance.capability_statement("x")["rest"]


def test_conformance_resources_by_name() -> None:
    assert "StructureDefinition-wijkbrug-Communication" in conformance.names()
    example = conformance.resource("examples/Communication-wondzorg-example")
    assert example == json.loads(EXAMPLE.read_text("utf-8"))
    with pytest.raises(ValueError, match="inside"):
        conformance.resource("../pyproject")
    profile = conformance.resource("StructureDefinition-wijkbrug-Communication")
    assert profile["type"] == "Communication" and profile["fhirVersion"] == "4.0.1"
    copy.deepcopy(profile)["differential"] = {}
    assert conformance.resource("StructureDefinition-wijkbrug-Communication")["differential"]


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out: list[tuple[str | int, ...]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


JUNK: list[Any] = [None, 0, True, "", " ", "x", [], {}, [None], [1], {"x": 1}, {"id": "a"}]


def test_junk_anywhere_is_an_issue_never_a_crash() -> None:
    original = json.loads(EXAMPLE.read_text("utf-8"))
    for path in _paths(original):
        for junk in JUNK:
            resource = copy.deepcopy(original)
            node: Any = resource
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = junk
            try:
                fhir_r4.parse_communication(as_json(resource), JSON)
            except WijkbrugError as error:
                assert error.all_issues() and all(i.expression for i in error.all_issues())
