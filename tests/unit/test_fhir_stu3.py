"""The fhir-stu3 dialect: zib2017 examples, the STU3 <-> R4 mapping, every bad input.

Golden inputs are the STU3 examples in tests/data/stu3 (written from the Nictiz zib2017
profiles; see the README there), in JSON and XML. The parsed CaseMessage is compared
field by field; its resource must be valid R4 (R4B models), replies valid STU3 (STU3
models, imported here directly so the check does not depend on bridge.fhirmodel). Every
bad input must name its place in the STU3 message and never repeat patient data.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class as r4b_model
from fhir.resources.STU3 import get_fhir_model_class as stu3_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import fhir_r4, fhir_stu3
from bridge import fhirmodel
from bridge.canonical import CareType, CaseMessage, Identifier, Party, Patient, Priority, Reply
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import (
    AGB_SYSTEM,
    BIG_SYSTEM,
    BSN_SYSTEM,
    CASE_SYSTEM,
    MESSAGE_SYSTEM,
    OID_TO_SYSTEM,
    URA_SYSTEM,
    UZI_SYSTEM,
)
from tests.support.issues import only, rejected

REPO = Path(__file__).resolve().parents[2]
STU3 = REPO / "tests" / "data" / "stu3"
WONDZORG = "Communication-wondzorg-practitioner"  # Practitioner sender, OIDs, urgent
ROLE = "Communication-palliatieve-zorg-role"  # PractitionerRole sender, recipient URA

Json = dict[str, Any]
JSON = "application/fhir+json"
XML = "application/fhir+xml"
BSN_OID = "urn:oid:2.16.840.1.113883.2.4.6.3"
AGB_OID = "urn:oid:2.16.840.1.113883.2.4.6.1"
# Patient data of the examples: no diagnostic may ever repeat it.
SECRETS = ("999911120", "999910036", "999911121", "Geertruida", "Kees", "onderbeenwond")


def example(name: str) -> Json:
    data: Json = json.loads((STU3 / f"{name}.json").read_text(encoding="utf-8"))
    return data


def example_xml(name: str) -> bytes:
    return (STU3 / f"{name}.xml").read_bytes()


def as_json(resource: Json) -> bytes:
    return json.dumps(resource, ensure_ascii=False).encode()


def parse(resource: Json) -> CaseMessage:
    return fhir_stu3.parse_communication(as_json(resource), JSON)


def problems(body: bytes, content_type: str = JSON) -> list[Issue]:
    """The issues of a rejected message; they must not repeat patient data."""
    issues = rejected(lambda: fhir_stu3.parse_communication(body, content_type), SECRETS)
    return issues


def valid_stu3(resource: Json) -> None:
    """Valid for the STU3 models and for our stricter JSON rules."""
    stu3_model(resource["resourceType"]).model_validate(resource)
    assert fhirmodel.check_stu3(resource) == []


def valid_r4(resource: Json) -> None:
    r4b_model(resource["resourceType"]).model_validate(resource)
    assert fhirmodel.check(resource) == []


# ---------------------------------------------------------------- golden: JSON and XML


def assert_wondzorg(msg: CaseMessage) -> None:
    assert msg.identifier == Identifier(
        "urn:oid:2.16.840.1.113883.2.4.6.1.01069857.1", "HIS-2026-004711"
    )
    assert msg.care_type is CareType.WONDZORG
    assert msg.patient == Patient(
        bsn="999911120",
        postcode="1073LS",
        name="Geertruida Maria van der Meer-de Boer",  # birth names, not also "G.M."
        birth_date=date(1938, 2, 17),
    )
    assert msg.sender == Party(
        name="H. de Vries",
        agb="01069857",
        identifiers=(Identifier(UZI_SYSTEM, "129854656"),),
    )
    assert msg.text.startswith("Mevrouw is gisteren ontslagen")
    assert msg.priority is Priority.URGENT
    assert msg.sent == datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    assert msg.recipient_ura is None


def assert_role(msg: CaseMessage) -> None:
    assert msg.care_type is CareType.PALLIATIEVE_ZORG
    assert msg.patient == Patient(
        bsn="999910036",
        postcode="1094HG",
        name="Kees van den Berg",  # the call name, not also the initials "C.J."
        birth_date=date(1951, 9, 3),
    )
    assert msg.sender == Party(
        name="Anouk Bakker",
        agb="01004321",
        organisation_name="Huisartsenpraktijk Indische Buurt",
        organisation_agb="01051234",
        organisation_ura="90001234",
        identifiers=(Identifier(BIG_SYSTEM, "19054321001"),),
    )
    assert msg.priority is Priority.ROUTINE
    assert msg.recipient_ura == "90005678"
    assert msg.sent == datetime(2026, 11, 26, 16, 5, tzinfo=timezone(timedelta(hours=1)))


def test_golden_json_practitioner_sender() -> None:
    assert_wondzorg(parse(example(WONDZORG)))


def test_golden_json_practitioner_role_sender() -> None:
    assert_role(parse(example(ROLE)))


@pytest.mark.parametrize(("name", "check"), [(WONDZORG, assert_wondzorg), (ROLE, assert_role)])
def test_golden_xml_is_the_same_message(name: str, check: Callable[[CaseMessage], None]) -> None:
    from_xml = fhir_stu3.parse_communication(example_xml(name), XML)
    check(from_xml)
    assert from_xml == parse(example(name))  # the R4 resource included
    resource, issues = fhirmodel.load_xml_stu3(example_xml(name))
    assert issues == [] and resource == example(name)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/xml",
        "application/xml+fhir",
        "application/fhir+xml; charset=utf-8; fhirVersion=3.0",
    ],
)
def test_xml_media_types(content_type: str) -> None:
    assert_wondzorg(fhir_stu3.parse_communication(example_xml(WONDZORG), content_type))


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json+fhir", "application/fhir+json;fhirVersion=3.0.2", ""],
)
def test_json_media_types(content_type: str) -> None:
    body = as_json(example(WONDZORG))
    assert_wondzorg(fhir_stu3.parse_communication(body, content_type))


def test_examples_are_valid_stu3() -> None:
    for name in (WONDZORG, ROLE):
        valid_stu3(example(name))


# ---------------------------------------------------------------- identifiers


@pytest.mark.parametrize("system", [BSN_OID, BSN_SYSTEM])
def test_bsn_as_oid_or_naming_system(system: str) -> None:
    resource = example(WONDZORG)
    resource["contained"][0]["identifier"][0]["system"] = system
    msg = parse(resource)
    assert msg.patient.bsn == "999911120"
    # The canonical R4 form speaks NamingSystem URIs, as R4 nl-core does.
    assert msg.resource["contained"][0]["identifier"][0]["system"] == BSN_SYSTEM


@pytest.mark.parametrize("system", [AGB_OID, AGB_SYSTEM])
def test_agb_as_oid_or_naming_system(system: str) -> None:
    resource = example(WONDZORG)
    resource["contained"][1]["identifier"][0]["system"] = system
    msg = parse(resource)
    assert msg.sender.agb == "01069857"
    assert msg.resource["contained"][1]["identifier"][0]["system"] == AGB_SYSTEM


def test_every_oid_is_normalised_in_the_r4_form() -> None:
    text = json.dumps(parse(example(ROLE)).resource)
    for oid in OID_TO_SYSTEM:
        assert f'"{oid}"' not in text
    assert URA_SYSTEM in text and AGB_SYSTEM in text
    # Codings keep their system: only identifiers are named by NamingSystem.
    assert "urn:oid:2.16.840.1.113883.2.4.6.7" in text


def test_logical_sender_with_agb_oid() -> None:
    resource = example(WONDZORG)
    del resource["contained"][1]
    del resource["contained"][0]["generalPractitioner"]
    resource["sender"] = {
        "identifier": {"system": AGB_OID, "value": "01234567"},
        "display": "A. Jansen",
    }
    assert parse(resource).sender == Party(name="A. Jansen", agb="01234567")


# ---------------------------------------------------------------- the R4 form


@pytest.mark.parametrize("name", [WONDZORG, ROLE])
def test_mapped_resource_is_valid_r4(name: str) -> None:
    msg = parse(example(name))
    valid_r4(msg.resource)
    assert msg.resource == fhir_stu3.to_r4(example(name))


def test_r4_form_of_the_role_example() -> None:
    r4 = parse(example(ROLE)).resource
    # R4 refers to the PractitionerRole itself; STU3 had to go through the Practitioner.
    assert r4["sender"] == {
        "reference": "#zvl-rol",
        "display": "A. Bakker (Huisartsenpraktijk Indische Buurt)",
    }
    assert "priority" not in r4 and "extension" not in r4
    assert all("meta" not in item for item in r4["contained"])  # STU3 profile claims


def test_r4_form_of_priority() -> None:
    r4 = parse(example(WONDZORG)).resource
    assert r4["priority"] == "urgent" and "extension" not in r4


def test_mapping_table_both_ways() -> None:
    """Every row of the mapping table: to R4, valid there, and back to the same STU3."""
    stu3 = example(WONDZORG)
    stu3["contained"].append(
        {
            "resourceType": "Encounter",
            "id": "enc",
            "status": "finished",
            "class": {"system": "http://hl7.org/fhir/v3/ActCode", "code": "AMB"},
        }
    )
    # Extensions that stay extensions first: the R4-element ones come back after them.
    stu3["extension"] = [
        {"url": "https://example.org/his-flag", "valueBoolean": True},
        *stu3["extension"],
        {
            "url": fhir_stu3.IN_RESPONSE_TO_EXTENSION,
            "valueReference": {"reference": "Communication/earlier"},
        },
        {"url": fhir_stu3.TOPIC_EXTENSION, "valueCodeableConcept": {"text": "Wondzorg"}},
    ]
    stu3["definition"] = [{"reference": "https://example.org/PlanDefinition/wond"}]
    stu3["status"] = "suspended"
    stu3["topic"] = [{"reference": "Communication/first"}]
    stu3["context"] = {"reference": "#enc"}
    stu3["reasonCode"] = [{"text": "ontslag"}]
    r4 = fhir_stu3.to_r4(stu3)
    valid_r4(r4)
    assert r4["priority"] == "urgent"
    assert r4["inResponseTo"] == [{"reference": "Communication/earlier"}]
    assert r4["topic"] == {"text": "Wondzorg"}
    assert r4["extension"] == [{"url": "https://example.org/his-flag", "valueBoolean": True}]
    assert r4["instantiatesCanonical"] == ["https://example.org/PlanDefinition/wond"]
    assert r4["status"] == "on-hold"
    assert r4["about"] == [{"reference": "Communication/first"}]
    assert r4["encounter"] == {"reference": "#enc"}
    back = fhir_stu3.from_r4(r4)
    valid_stu3(back)
    assert back == documented_normalisation(stu3)
    assert fhir_stu3.to_r4(back) == r4  # the R4 form is a fixed point


def test_not_done_and_episode_of_care_context() -> None:
    stu3 = example(WONDZORG)
    stu3["notDone"] = True
    stu3["notDoneReason"] = {"text": "patiënt opgenomen"}
    stu3["context"] = {"reference": "EpisodeOfCare/123", "display": "Zorgepisode"}
    stu3["definition"] = [{"display": "Werkafspraak wondzorg"}]
    r4 = fhir_stu3.to_r4(stu3)
    valid_r4(r4)
    assert r4["status"] == "not-done"
    assert r4["statusReason"] == {"text": "patiënt opgenomen"}
    assert "encounter" not in r4
    assert {
        "url": fhir_stu3.CONTEXT_EXTENSION,
        "valueReference": {"reference": "EpisodeOfCare/123", "display": "Zorgepisode"},
    } in r4["extension"]
    assert {
        "url": fhir_stu3.DEFINITION_EXTENSION,
        "valueReference": {"display": "Werkafspraak wondzorg"},
    } in r4["extension"]
    back = fhir_stu3.from_r4(r4)
    valid_stu3(back)
    assert back["notDone"] is True and back["context"] == stu3["context"]
    assert back["definition"] == stu3["definition"]


def test_related_person_and_animal() -> None:
    stu3 = example(WONDZORG)
    stu3["contained"][0]["animal"] = {"species": {"text": "hond"}}
    stu3["contained"].append(
        {
            "resourceType": "RelatedPerson",
            "id": "dochter",
            "patient": {"reference": "#patient"},
            "relationship": {"text": "dochter"},
            "name": [{"family": "de Boer", "given": ["Anna"]}],
        }
    )
    r4 = fhir_stu3.to_r4(stu3)
    valid_r4(r4)
    assert "animal" not in r4["contained"][0]
    assert r4["contained"][2]["relationship"] == [{"text": "dochter"}]
    back = fhir_stu3.from_r4(r4)
    valid_stu3(back)
    assert back["contained"][2]["relationship"] == {"text": "dochter"}


def test_stu3_only_contained_resource_is_left_out_and_paths_still_point_into_stu3() -> None:
    stu3 = example(WONDZORG)
    # ProcedureRequest is STU3 only (R4 has ServiceRequest): it cannot be carried over.
    request = {
        "resourceType": "ProcedureRequest",
        "id": "req",
        "status": "active",
        "intent": "order",
        "code": {"text": "wondverzorging"},
        "subject": {"reference": "#patient"},
    }
    stu3["contained"].insert(0, request)
    stu3["basedOn"] = [{"reference": "#req"}]
    r4 = fhir_stu3.to_r4(stu3)
    valid_r4(r4)
    assert [c["resourceType"] for c in r4["contained"]] == ["Patient", "Practitioner"]
    assert r4["basedOn"] == [{"display": "(not carried over from FHIR STU3)"}]
    assert parse(stu3).patient.bsn == "999911120"
    stu3["contained"][1]["identifier"][0]["value"] = "999911121"
    issue = only(problems(as_json(stu3)))
    assert issue.expression == "Communication.contained[1].identifier[0].value"


def documented_normalisation(stu3: Json) -> Json:
    """What a trip through R4 changes, by design (see the module docstring)."""
    out = copy.deepcopy(stu3)
    for node in _nodes(out):
        if isinstance(node, dict) and node.get("system") in OID_TO_SYSTEM and "value" in node:
            node["system"] = OID_TO_SYSTEM[node["system"]]
    for item in out.get("contained", []):
        item.pop("meta", None)
        item.pop("animal", None)
        for name in item.get("name", []) if isinstance(item.get("name"), list) else []:
            if any(twin for twin in name.get("_given", [])):
                qualified = fhir_stu3.to_r4({"contained": [item]})["contained"][0]
                name["text"] = qualified["name"][0]["text"]
    return out


@pytest.mark.parametrize("name", [WONDZORG, ROLE])
def test_examples_round_trip_through_r4(name: str) -> None:
    stu3 = example(name)
    back = fhir_stu3.from_r4(fhir_stu3.to_r4(stu3))
    valid_stu3(back)
    assert back == documented_normalisation(stu3)


def test_r4_messages_from_other_dialects_render_as_stu3() -> None:
    r4 = json.loads(
        (REPO / "fhir" / "examples" / "Communication-wondzorg-example.json").read_text()
    )
    stu3 = fhir_stu3.from_r4(r4)
    valid_stu3(stu3)
    assert stu3["sender"]["extension"] == [
        {"url": fhir_stu3.ROLE_EXTENSION, "valueReference": {"reference": "#sender"}}
    ]
    assert stu3["sender"]["reference"] == "#practitioner"


# ---------------------------------------------------------------- bad input


def test_malformed_json_says_where_not_what() -> None:
    issue = only(problems(b'{"resourceType": "Communication",\n "status": 999911120x}'))
    assert issue.code is ErrorCode.INVALID
    assert "malformed JSON at line 2 column" in issue.diagnostics


@pytest.mark.parametrize("body", [b"", b"[]", b'{"a": 1, "a": 2}', b"\xff\xfe{}"])
def test_not_a_json_resource(body: bytes) -> None:
    assert only(problems(body)).code is ErrorCode.INVALID


def test_malformed_xml_says_where() -> None:
    issue = only(problems(b"<Communication xmlns='http://hl7.org/fhir'>\n<status>", XML))
    assert issue.code is ErrorCode.INVALID
    assert issue.diagnostics.startswith("malformed XML at line")


def test_xml_doctype_is_refused() -> None:
    body = b"""<?xml version="1.0"?>
<!DOCTYPE Communication [<!ENTITY x "completed">]>
<Communication xmlns="http://hl7.org/fhir"><status value="&x;"/></Communication>"""
    assert "DOCTYPE" in only(problems(body, XML)).diagnostics


@pytest.mark.parametrize(
    ("body", "words", "code"),
    [
        (b'{"resourceType": "Patient", "id": "p"}', "expected a Communication, got a Patient", "i"),
        (b'{"resourceType": "Bundle", "type": "collection"}', "Bundle is not accepted", "i"),
        (b'{"resourceType": "ServiceRequest"}', "ServiceRequest is not an STU3 resource", "i"),
        (b'{"resourceType": "999911120"}', "unknown resource type", "i"),
        (b'{"status": "completed"}', "resourceType is missing", "r"),
    ],
)
def test_wrong_resource_type_is_named(body: bytes, words: str, code: str) -> None:
    issue = only(problems(body))
    assert words in issue.diagnostics
    assert issue.code is (ErrorCode.INVALID if code == "i" else ErrorCode.REQUIRED)
    assert issue.expression == "Communication.resourceType"


def test_wrong_resource_type_in_xml() -> None:
    body = b'<Patient xmlns="http://hl7.org/fhir"><id value="p"/></Patient>'
    issue = only(problems(body, XML))
    assert issue.diagnostics == "expected a Communication, got a Patient"


@pytest.mark.parametrize(
    ("element", "value", "words"),
    [
        ("priority", "urgent", "extension-Communication.priority"),
        ("inResponseTo", [{"reference": "Communication/1"}], "extension-Communication.inResp"),
        ("about", [{"reference": "Communication/1"}], "STU3 calls it topic"),
        ("encounter", {"reference": "Encounter/1"}, "STU3 calls it context"),
        ("statusReason", {"text": "x"}, "STU3 calls it notDoneReason"),
    ],
)
def test_r4_only_element_is_the_wrong_fhir_version(element: str, value: Any, words: str) -> None:
    resource = example(WONDZORG)
    resource[element] = value
    issue = only(problems(as_json(resource)))
    assert issue.code is ErrorCode.INVALID
    assert issue.expression == f"Communication.{element}"
    assert words in issue.diagnostics and "/fhir" in issue.diagnostics


def test_r4_only_element_in_xml() -> None:
    body = example_xml(WONDZORG).replace(
        b"<subject>", b'<priority value="urgent"/>\n  <subject>', 1
    )
    issue = only(problems(body, XML))
    assert issue.expression == "Communication.priority" and "FHIR R4" in issue.diagnostics


def test_an_r4_message_is_sent_to_the_r4_endpoint() -> None:
    body = (REPO / "fhir" / "examples" / "Communication-wondzorg-example.json").read_bytes()
    assert fhir_r4.parse_communication(body, JSON).care_type is CareType.WONDZORG
    issues = problems(body)
    assert {i.expression for i in issues} >= {"Communication.priority"}
    assert all("/fhir" in i.diagnostics for i in issues)


@pytest.mark.parametrize(
    "header",
    [
        "application/fhir+json; fhirVersion=4.0",
        "application/fhir+json; charset=latin-1",
        "text/plain",
    ],
)
def test_unsupported_media_type(header: str) -> None:
    with pytest.raises(WijkbrugError) as caught:
        fhir_stu3.parse_communication(as_json(example(WONDZORG)), header)
    assert caught.value.code is ErrorCode.NOT_SUPPORTED and caught.value.status == 415


Mutation = Callable[[Json], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(resource: Json) -> None:
        *parents, last = path.split(".")
        node: Any = resource
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    ("mutation", "code", "expression"),
    [
        (
            _set("contained.0.identifier.0.value", "999911121"),
            ErrorCode.VALUE,
            "Communication.contained[0].identifier[0].value",
        ),
        (
            _set("contained.0.identifier.0.system", "http://example.org/mrn"),
            ErrorCode.REQUIRED,
            "Communication.contained[0].identifier",
        ),
        (
            _set("category.0.coding.0.code", "tandzorg"),
            ErrorCode.VALUE,
            "Communication.category[0].coding[0].code",
        ),
        (_set("category", _DELETE), ErrorCode.REQUIRED, "Communication.category"),
        (_set("payload", _DELETE), ErrorCode.REQUIRED, "Communication.payload"),
        (
            _set("payload.0.contentString", "  "),
            ErrorCode.REQUIRED,
            "Communication.payload[0].contentString",
        ),
        (
            _set("contained.1.identifier.0.value", "1069857"),
            ErrorCode.VALUE,
            "Communication.contained[1].identifier[0].value",
        ),
        (
            _set("contained.0.address.0.postalCode", "B-1000"),
            ErrorCode.VALUE,
            "Communication.contained[0].address[0].postalCode",
        ),
        (_set("identifier", _DELETE), ErrorCode.REQUIRED, "Communication.identifier"),
        (_set("status", "on-hold"), ErrorCode.VALUE, "Communication.status"),
        (_set("status", _DELETE), ErrorCode.REQUIRED, "Communication.status"),
        (
            _set("extension.0.valueCode", "spoed"),
            ErrorCode.VALUE,
            "Communication.extension[0].valueCode",
        ),
        (
            _set("extension.0", {"url": fhir_stu3.PRIORITY_EXTENSION, "valueString": "urgent"}),
            ErrorCode.REQUIRED,
            "Communication.extension[0]",
        ),
        (
            _set("contained.0.birthDate", "17-02-1938"),
            ErrorCode.VALUE,
            "Communication.contained[0].birthDate",
        ),
        (
            _set("subject.reference", "#nobody"),
            ErrorCode.INVALID,
            "Communication.subject.reference",
        ),
        (_set("sent", True), ErrorCode.VALUE, "Communication.sent"),
        (_set("notDone", "yes"), ErrorCode.VALUE, "Communication.notDone"),
    ],
)
def test_bad_input_names_code_and_place(
    mutation: Mutation, code: ErrorCode, expression: str
) -> None:
    resource = example(WONDZORG)
    mutation(resource)
    issue = only(problems(as_json(resource)))
    assert (issue.code, issue.expression) == (code, expression)


def test_unknown_status_names_the_stu3_codes() -> None:
    resource = example(WONDZORG)
    resource["status"] = "on-hold"  # R4 has it; STU3 says suspended
    issue = only(problems(as_json(resource)))
    assert "suspended" in issue.diagnostics and "on-hold" not in issue.diagnostics


def test_priority_given_twice() -> None:
    resource = example(WONDZORG)
    resource["extension"].append({"url": fhir_stu3.PRIORITY_EXTENSION, "valueCode": "stat"})
    issue = only(problems(as_json(resource)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Communication.extension[1]")


def test_role_extension_must_find_a_contained_role() -> None:
    resource = example(ROLE)
    resource["sender"]["extension"][0]["valueReference"]["reference"] = "#pat"
    issue = only(problems(as_json(resource)))
    assert issue.code is ErrorCode.INVALID
    assert issue.expression == "Communication.sender.extension[0].valueReference.reference"


def test_role_paths_point_into_the_stu3_message() -> None:
    resource = example(ROLE)
    resource["contained"][2]["identifier"][0]["value"] = "123"  # the practice's AGB
    resource["recipient"][0]["identifier"]["value"] = "9000"
    issues = problems(as_json(resource))
    assert [(i.code, i.expression) for i in issues] == [
        (ErrorCode.VALUE, "Communication.contained[2].identifier[0].value"),
        (ErrorCode.VALUE, "Communication.recipient[0].identifier.value"),
    ]


def test_a_role_without_practitioner_takes_it_from_the_sender_reference() -> None:
    resource = example(ROLE)
    del resource["contained"][3]["practitioner"]
    assert parse(resource).sender.agb == "01004321"


def test_every_issue_at_once() -> None:
    resource = example(WONDZORG)
    resource["contained"][0]["identifier"][0]["value"] = "999911121"
    resource["category"][0]["coding"][0]["code"] = "tandzorg"
    del resource["payload"]
    resource["priority"] = "urgent"
    issues = problems(as_json(resource))
    assert [i.expression for i in issues] == [
        "Communication.priority",
        "Communication.category[0].coding[0].code",
        "Communication.contained[0].identifier[0].value",
        "Communication.payload",
    ]


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("topic", {"reference": "Communication/1"}),  # STU3 topic is a list (R4 about)
        ("context", [{"reference": "Encounter/1"}]),  # one context (R4 encounter)
        ("notDoneReason", [{"text": "x"}]),  # one reason (R4 statusReason)
    ],
)
def test_malformed_renamed_elements_are_reported_once_at_their_stu3_path(
    element: str, value: Any
) -> None:
    resource = example(WONDZORG)
    resource[element] = value
    issue = only(problems(as_json(resource)))
    assert issue.code is ErrorCode.INVALID and issue.expression == f"Communication.{element}"


def test_issues_in_xml_have_the_same_paths() -> None:
    body = example_xml(WONDZORG).replace(b'"wondzorg"', b'"tandzorg"')
    issue = only(problems(body, XML))
    assert issue.expression == "Communication.category[0].coding[0].code"


# ---------------------------------------------------------------- rendering

NURSE = Party(
    name="Fatima el Amrani",
    organisation_name="Thuiszorg Oost",
    organisation_ura="90005678",
    matrix_id="@nurse1:localhost",
)
SENT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def reply(**changes: Any) -> Reply:
    fields: dict[str, Any] = {
        "id": "c2",
        "in_response_to": "c1",
        "case_number": "WB-2026-000042",
        "care_type": CareType.WONDZORG,
        "sender": NURSE,
        "text": "Morgen om 9 uur komt de wijkverpleging langs.",
        "sent": SENT,
        "patient": Patient(bsn="999911120", postcode="1073LS", name="G. de Boer"),
    }
    fields.update(changes)
    return Reply(**fields)


def test_render_reply_is_valid_stu3_and_round_trips() -> None:
    out = fhir_stu3.render_reply(reply(), last_updated=SENT)
    valid_stu3(out)
    model = stu3_model("Communication").model_validate(out)
    assert model.model_dump(mode="json", exclude_none=True) == out
    assert fhirmodel.load_xml_stu3(fhir_stu3.to_xml(out)) == (out, [])
    assert out["status"] == "completed"
    assert {"system": MESSAGE_SYSTEM, "value": "c2"} in out["identifier"]
    assert {"use": "secondary", "system": CASE_SYSTEM, "value": "WB-2026-000042"} in out[
        "identifier"
    ]


def test_reply_names_the_answered_message_both_ways() -> None:
    out = fhir_stu3.render_reply(reply(), last_updated=SENT)
    answered = {"reference": "Communication/c1"}
    assert out["topic"] == [answered]
    assert out["extension"] == [
        {"url": fhir_stu3.IN_RESPONSE_TO_EXTENSION, "valueReference": answered}
    ]
    r4 = fhir_stu3.to_r4(out)
    valid_r4(r4)
    assert r4["inResponseTo"] == [answered]


def test_reply_sender_is_the_role_the_nictiz_way() -> None:
    out = fhir_stu3.render_reply(reply(), last_updated=SENT)
    assert out["sender"] == {
        "extension": [
            {"url": fhir_stu3.ROLE_EXTENSION, "valueReference": {"reference": "#sender-role"}}
        ],
        "reference": "#sender",
        "display": "Fatima el Amrani (Thuiszorg Oost)",
    }
    assert "type" not in out["subject"]  # R4's Reference.type is not STU3


def test_reply_of_a_nurse_without_organisation_or_question() -> None:
    alone = Party(name="@nurse2:localhost", matrix_id="@nurse2:localhost")
    out = fhir_stu3.render_reply(
        reply(sender=alone, in_response_to="", patient=None), last_updated=SENT
    )
    valid_stu3(out)
    assert out["sender"] == {"reference": "#sender", "display": "@nurse2:localhost"}
    assert "topic" not in out and "extension" not in out and "subject" not in out


@pytest.mark.parametrize("name", [WONDZORG, ROLE])
def test_stored_communication_in_stu3(name: str) -> None:
    msg = parse(example(name))
    out = fhir_stu3.communication_for_case_message(
        msg, id="c1", status="in-progress", last_updated=SENT, case_number="WB-2026-000042"
    )
    valid_stu3(out)
    assert out["id"] == "c1" and out["meta"]["lastUpdated"] == "2026-11-25T10:15:00Z"
    assert {"use": "secondary", "system": CASE_SYSTEM, "value": "WB-2026-000042"} in out[
        "identifier"
    ]
    assert out["sender"] == example(name)["sender"]
    assert out.get("extension") == example(name).get("extension")
    # The same message as stored R4, for the R4 endpoint.
    stored_r4 = fhir_r4.communication_for_case_message(
        msg, id="c1", status="in-progress", last_updated=SENT, case_number="WB-2026-000042"
    )
    assert fhir_stu3.from_r4(stored_r4) == out


def test_response_media_type() -> None:
    assert fhir_stu3.response_media_type("application/xml+fhir") == fhir_stu3.FHIR_XML
    assert fhir_stu3.response_media_type(None, "xml") == fhir_stu3.FHIR_XML
    assert fhir_stu3.response_media_type("application/json+fhir, */*;q=0.1") == fhir_stu3.FHIR_JSON
    assert fhir_stu3.NAME == "fhir-stu3" and "application/json+fhir" in fhir_stu3.MEDIA_TYPES


# ---------------------------------------------------------------- the one door


def test_only_fhirmodel_imports_fhir_resources_r4b_or_stu3() -> None:
    importing = set()
    for path in [*REPO.glob("bridge/**/*.py"), *REPO.glob("adapters/**/*.py")]:
        for line in path.read_text("utf-8").splitlines():
            match = re.match(
                r"\s*(?:from|import)\s+(fhir\.resources\S*)(?:\s+import\s+(\w+))?", line
            )
            if match:
                importing.add(path.relative_to(REPO).as_posix())
                module, name = match.group(1), match.group(2)
                versioned = module.startswith(("fhir.resources.R4B", "fhir.resources.STU3"))
                assert versioned or name in ("R4B", "STU3"), (path, line)
    assert importing == {"bridge/fhirmodel.py"}


def test_stu3_parsing_loads_no_r5_model() -> None:
    code = (
        "import sys; from adapters import fhir_stu3; "
        f"body = open({str(STU3 / (ROLE + '.xml'))!r}, 'rb').read(); "
        "fhir_stu3.parse_communication(body, 'application/fhir+xml'); "
        "bad = [m for m in sys.modules if m.startswith('fhir.resources.') "
        "and not m.startswith(('fhir.resources.R4B', 'fhir.resources.STU3'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------- property-based

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "resourceType",
        "contained",
        "extension",
        "identifier",
        "status",
        "notDone",
        "category",
        "subject",
        "sender",
        "recipient",
        "payload",
        "topic",
        "context",
        "definition",
        "reference",
        "valueReference",
        "valueCode",
        "url",
        "system",
        "value",
        "given",
        "_given",
        "name",
        "address",
        "postalCode",
        "practitioner",
        "organization",
        "priority",
    ]
)


def outcome_of(body: bytes, content_type: str) -> None:
    """Parsing anything ends in a CaseMessage or a WijkbrugError, never another exception,
    and an error never repeats the example's patient data."""
    try:
        fhir_stu3.parse_communication(body, content_type)
    except WijkbrugError as error:
        shown = " ".join(f"{i.diagnostics} {i.expression}" for i in error.all_issues())
        assert "999911120" not in shown and "onderbeenwond" not in shown


def _nodes(node: Any) -> list[Any]:
    """Every object and array inside a JSON value (the places a mutation can hit)."""
    out: list[Any] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            out.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return out


@st.composite
def mutated_examples(draw: st.DrawFn) -> Json:
    resource = example(draw(st.sampled_from([WONDZORG, ROLE])))
    for _ in range(draw(st.integers(1, 4))):
        nodes = _nodes(resource)
        node = draw(st.sampled_from(nodes))
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node)) | KEYS) if node else draw(KEYS)
            action = draw(st.sampled_from(["set", "delete", "copy"]))
            if action == "delete":
                node.pop(key, None)
            elif action == "copy":
                node[key] = copy.deepcopy(draw(st.sampled_from(nodes)))
            else:
                node[key] = draw(JSON_VALUES)
        elif node:
            index = draw(st.integers(0, len(node) - 1))
            node[index] = draw(JSON_VALUES | st.sampled_from([None, {}, []]))
        else:
            node.append(draw(JSON_VALUES))
    return resource


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.binary(max_size=200), st.sampled_from([JSON, XML]))
def test_random_bytes_only_raise_wijkbrug_errors(body: bytes, content_type: str) -> None:
    outcome_of(body, content_type)


@PROPERTY
@given(st.dictionaries(KEYS, JSON_VALUES, max_size=8))
def test_random_communications_only_raise_wijkbrug_errors(resource: Json) -> None:
    resource["resourceType"] = "Communication"
    outcome_of(json.dumps(resource).encode(), JSON)


@PROPERTY
@given(mutated_examples())
def test_mutated_examples_only_raise_wijkbrug_errors(resource: Json) -> None:
    body = json.dumps(resource, ensure_ascii=False).encode()
    outcome_of(body, JSON)
    # The same mutation in XML, where it can be written as XML at all.
    try:
        xml = fhirmodel.dump_xml_stu3(resource)
    except (KeyError, TypeError, ValueError, AttributeError):
        return
    outcome_of(xml, XML)


@PROPERTY
@given(st.sampled_from([WONDZORG, ROLE]), st.data())
def test_mutated_xml_bytes_only_raise_wijkbrug_errors(name: str, data: st.DataObject) -> None:
    body = bytearray(example_xml(name))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(body) - 1))
        cut = data.draw(st.integers(0, 40))
        body[at : at + cut] = data.draw(st.binary(max_size=8) | st.sampled_from([b"<", b">", b'"']))
    outcome_of(bytes(body), XML)
