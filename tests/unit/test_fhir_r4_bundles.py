"""The fhir-r4 dialect's Bundles: transaction, batch and message, on real Nictiz examples.

A Bundle carries one Communication and, as entries of their own, the Nictiz R4 zib2020
Patient, Practitioner, PractitionerRole and Organization (unchanged: their own ids,
narrative and the PractitionerRole's relative reference ``Practitioner/<id>``). It is
sent as JSON and as XML (the Nictiz XML embedded as it is). The parsed CaseMessage is
compared field by field, and its resource must be one self-contained, valid R4
Communication. Every bad Bundle must name its place and never repeat patient data.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle as R4Bundle

from adapters import fhir_r4
from bridge import fhirmodel
from bridge.canonical import CareType, CaseMessage, Party, Patient, Priority
from bridge.config import generate_config, load_settings
from bridge.errors import ErrorCode, Issue, WijkbrugError, operation_outcome
from bridge.identifiers import AGB_SYSTEM, URA_SYSTEM
from bridge.service import Bridge
from bridge.web.app import create_app
from tests.support.bundles import (
    COMMUNICATION_URL,
    HEADER_URL,
    JSON,
    KINDS,
    NICTIZ_BSN,
    ORDER,
    ORGANIZATION_URL,
    PATIENT_URL,
    PRACTITIONER_URL,
    ROLE_URL,
    SENDER_ID,
    TEXT,
    XML,
    Json,
    as_json,
    at,
    bundle,
    communication,
    entry_of,
    nictiz,
    parts,
    xml_bundle,
)
from tests.support.examples import region
from tests.support.issues import only, rejected

# Patient data, and the references as sent (a reference may carry a BSN).
SECRETS = (NICTIZ_BSN, "999911121", TEXT, "Johanna", "Putten", "Janszens", "Erasmus", "2f2f6a48")


def problems(body: bytes, content_type: str = JSON) -> list[Issue]:
    """The issues of a rejected Bundle; they must not repeat patient data or references."""
    issues = rejected(lambda: fhir_r4.parse_communication(body, content_type), SECRETS)
    assert issues and all(i.expression for i in issues)
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
    assert msg.sender == Party(
        name="H.A. Janszens",
        agb="01999999",
        organisation_name="Erasmus Universitair Medisch Centrum",
        organisation_ura="06020806",
    )
    assert msg.text == TEXT
    assert msg.priority is Priority.ROUTINE
    assert msg.sent == datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    assert msg.recipient_ura == "06020806"


def references(node: Any) -> list[str]:
    """Every ``Reference.reference`` in a resource."""
    if isinstance(node, list):
        return [r for item in node for r in references(item)]
    if not isinstance(node, dict):
        return []
    out = [node["reference"]] if isinstance(node.get("reference"), str) else []
    return out + [r for key, value in node.items() if key != "reference" for r in references(value)]


def assert_self_contained(resource: Json) -> None:
    """One valid R4 Communication that refers to nothing outside itself."""
    assert resource["resourceType"] == "Communication"
    assert fhirmodel.check(resource) == []
    fhirmodel.model(resource)  # the R4B model accepts it
    local = {c["id"] for c in resource["contained"]}
    assert len(local) == len(resource["contained"])
    for reference in references(resource):
        assert reference.startswith("#") and reference[1:] in local, reference
    for item in resource["contained"]:
        assert "text" not in item and "contained" not in item  # R4 dom-1, dom-2
        assert "versionId" not in item.get("meta", {})  # dom-4
    # Read on its own (as the case room and GET /fhir/Communication see it), it is the
    # same message.
    alone = fhir_r4.read_communication(resource)
    assert_golden(alone)
    assert fhirmodel.load_xml(fhirmodel.dump_xml(resource)) == (resource, [])


@pytest.mark.parametrize("kind", KINDS)
def test_nictiz_bundle_json(kind: str) -> None:
    sent = bundle(kind)
    before = copy.deepcopy(sent)
    msg = fhir_r4.parse_communication(as_json(sent), JSON)
    assert_golden(msg)
    assert_self_contained(msg.resource)
    assert sent == before  # the input is not changed
    kinds = [(c["resourceType"], c["id"]) for c in msg.resource["contained"]]
    assert kinds == [  # in the order of the Bundle
        ("Patient", "patient"),
        ("Practitioner", "practitioner"),  # through the PractitionerRole
        ("PractitionerRole", "practitionerrole"),
        ("Organization", "organization"),
    ]
    assert msg.resource["subject"] == {"reference": "#patient"}
    assert msg.resource["sender"] == {"reference": "#practitionerrole"}
    assert msg.resource["recipient"] == [{"reference": "#organization"}]
    contained = {c["id"]: c for c in msg.resource["contained"]}
    assert contained["practitionerrole"]["practitioner"]["reference"] == "#practitioner"
    assert contained["practitionerrole"]["organization"] == {"reference": "#organization"}
    # Apart from its id and narrative, a contained entry is the entry as it was sent.
    patient = {k: v for k, v in nictiz("nl-core-Patient-01").items() if k not in ("id", "text")}
    assert {k: v for k, v in contained["patient"].items() if k != "id"} == patient


@pytest.mark.parametrize("kind", KINDS)
def test_nictiz_bundle_xml(kind: str) -> None:
    msg = fhir_r4.parse_communication(xml_bundle(kind), XML)
    assert_golden(msg)
    assert_self_contained(msg.resource)
    # The XML Bundle reads as the same message as its JSON form.
    assert msg == fhir_r4.parse_communication(as_json(bundle(kind)), JSON)


def test_bundle_through_our_own_xml_writer() -> None:
    sent = bundle("transaction")
    body = fhirmodel.dump_xml(sent)
    assert fhirmodel.load_xml(body) == (sent, [])
    assert fhir_r4.parse_communication(body, "application/xml") == fhir_r4.parse_communication(
        as_json(sent), JSON
    )


def test_stored_communication_of_a_bundle() -> None:
    msg = fhir_r4.parse_communication(as_json(bundle("transaction")), JSON)
    stored = fhir_r4.communication_for_case_message(
        msg,
        id="c-1",
        status="in-progress",
        last_updated=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        case_number="WB-000042",
    )
    assert fhirmodel.check(stored) == []
    assert stored["contained"] == msg.resource["contained"]
    again = fhir_r4.parse_communication(as_json(stored), JSON)
    assert (again.patient, again.sender, again.recipient_ura) == (
        msg.patient,
        msg.sender,
        msg.recipient_ura,
    )


# ---------------------------------------------------------------- the ways to refer


def test_relative_reference_by_fullurl_ending() -> None:
    entries = parts()
    patient = entries["Patient"][1]
    del patient["id"]  # found by its fullUrl alone
    entries["Patient"] = ("https://his.example/fhir/Patient/p-17", patient)
    entries["Communication"][1]["subject"] = {"reference": "Patient/p-17"}
    msg = fhir_r4.parse_communication(as_json(bundle("transaction", entries)), JSON)
    assert msg.patient.bsn == NICTIZ_BSN
    assert_self_contained(msg.resource)


def test_absolute_and_versioned_references() -> None:
    entries = parts()
    comm = entries["Communication"][1]
    comm["sender"] = {"reference": f"{PRACTITIONER_URL}/_history/3"}
    del comm["recipient"]
    msg = fhir_r4.parse_communication(as_json(bundle("batch", entries)), JSON)
    assert msg.sender == Party(name="H.A. Janszens", agb="01999999")
    assert msg.resource["sender"] == {"reference": "#practitioner"}


def test_contained_references_inside_the_communication() -> None:
    entries = parts()
    comm = entries["Communication"][1]
    patient = nictiz("nl-core-Patient-01")
    patient["id"] = "practitioner"  # a local id the entries' local ids must not take
    del patient["text"]
    comm["contained"] = [patient]
    comm["subject"] = {"reference": "#practitioner"}
    msg = fhir_r4.parse_communication(as_json(bundle("message", entries)), JSON)
    assert msg.patient.bsn == NICTIZ_BSN
    ids = [c["id"] for c in msg.resource["contained"]]
    assert ids == ["practitioner", "practitioner-2", "practitionerrole", "organization"]
    assert msg.resource["subject"] == {"reference": "#practitioner"}
    # The Patient entry is referred to by nothing, so it is not carried along.
    assert all(c["resourceType"] != "Patient" for c in msg.resource["contained"][1:])
    assert_self_contained(msg.resource)


def test_an_entry_with_contained_resources_of_its_own() -> None:
    entries = parts()
    role_ = entries["PractitionerRole"][1]
    practitioner = nictiz("nl-core-SOAPReport-01-Practitioner-01")
    practitioner["id"] = "p"
    del practitioner["text"]
    role_["contained"] = [practitioner]
    role_["practitioner"] = {"reference": "#p"}  # the role's own, not the Communication's
    del entries["Practitioner"]
    sent = bundle("transaction", entries)
    msg = fhir_r4.parse_communication(as_json(sent), JSON)
    assert msg.sender.name == "H.A. Janszens"
    contained = {c["id"]: c for c in msg.resource["contained"]}
    assert contained["practitionerrole"]["practitioner"] == {"reference": "#practitioner"}
    assert contained["practitioner"]["identifier"][0]["system"] == AGB_SYSTEM
    assert_self_contained(msg.resource)


def test_references_between_entries_are_carried_along() -> None:
    entries = parts()
    entries["Patient"][1]["managingOrganization"] = {"reference": ORGANIZATION_URL}
    entries["Patient"][1]["generalPractitioner"] = [{"reference": ROLE_URL}]
    del entries["Communication"][1]["recipient"]
    msg = fhir_r4.parse_communication(as_json(bundle("transaction", entries)), JSON)
    contained = {c["id"]: c for c in msg.resource["contained"]}
    assert contained["patient"]["managingOrganization"] == {"reference": "#organization"}
    assert contained["patient"]["generalPractitioner"] == [{"reference": "#practitionerrole"}]
    assert msg.recipient_ura is None
    assert fhirmodel.check(msg.resource) == []


def test_logical_references_still_work_in_a_bundle() -> None:
    entries = parts()
    comm = entries["Communication"][1]
    comm["sender"] = {
        "identifier": {"system": AGB_SYSTEM, "value": "01234567"},
        "display": "A. Jansen",
    }
    comm["recipient"] = [{"identifier": {"system": URA_SYSTEM, "value": "12345678"}}]
    msg = fhir_r4.parse_communication(as_json(bundle("transaction", entries)), JSON)
    assert msg.sender == Party(name="A. Jansen", agb="01234567")
    assert msg.recipient_ura == "12345678"
    assert [c["resourceType"] for c in msg.resource["contained"]] == ["Patient"]


# ---------------------------------------------------------------- bad Bundles


Mutation = Callable[[Json, str], None]


def _change(resource_type: str, changes: dict[str, Any]) -> Mutation:
    """Set (or, for None, delete) elements of one entry's resource."""

    def mutate(data: Json, kind: str) -> None:
        resource = entry_of(data, kind, resource_type)["resource"]
        for key, value in changes.items():
            if value is None:
                del resource[key]
            else:
                resource[key] = value

    return mutate


def _comm(**changes: Any) -> Mutation:
    return _change("Communication", changes)


def _role_part(**changes: Any) -> Mutation:
    return _change("PractitionerRole", changes)


UNKNOWN_UUID = "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1aff"
CONDITIONAL = f"Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|{NICTIZ_BSN}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("mutate", "where", "path", "code", "words"),
    [
        (
            _comm(subject={"reference": UNKNOWN_UUID}),
            "Communication",
            ".subject.reference",
            ErrorCode.INVALID,
            "does not resolve to one entry",
        ),
        (
            _comm(subject={"reference": CONDITIONAL}),
            "Communication",
            ".subject.reference",
            ErrorCode.INVALID,
            "does not resolve to one entry",
        ),
        (
            _comm(subject={"reference": "#patient"}),
            "Communication",
            ".subject.reference",
            ErrorCode.INVALID,
            "contained resource that is not there",
        ),
        (
            _comm(subject={"reference": PRACTITIONER_URL}),
            "Communication",
            ".subject.reference",
            ErrorCode.INVALID,
            "not a Practitioner",
        ),
        (
            _comm(subject={"display": "mevrouw"}),
            "Communication",
            ".subject.reference",
            ErrorCode.INVALID,
            "an entry of the Bundle",
        ),
        (
            _comm(sender={"reference": "PractitionerRole/elders"}),
            "Communication",
            ".sender.reference",
            ErrorCode.INVALID,
            "does not resolve",
        ),
        (
            _comm(sender={"reference": PATIENT_URL}),
            "Communication",
            ".sender.reference",
            ErrorCode.INVALID,
            "got a Patient",
        ),
        (
            _comm(sender={"display": "dokter"}),
            "Communication",
            ".sender.identifier",
            ErrorCode.REQUIRED,
            "of the Bundle",
        ),
        (
            _comm(recipient=[{"reference": "https://elders.example/fhir/Organization/9"}]),
            "Communication",
            ".recipient[0].reference",
            ErrorCode.INVALID,
            "does not resolve",
        ),
        (
            _comm(recipient=[{"reference": PATIENT_URL}]),
            "Communication",
            ".recipient[0].reference",
            ErrorCode.INVALID,
            "Organization of the Bundle",
        ),
        (
            _role_part(practitioner={"reference": "Practitioner/elders"}),
            "PractitionerRole",
            ".practitioner.reference",
            ErrorCode.INVALID,
            "does not resolve",
        ),
        (
            _role_part(practitioner={"reference": ORGANIZATION_URL}),
            "PractitionerRole",
            ".practitioner.reference",
            ErrorCode.INVALID,
            "Practitioner of the Bundle",
        ),
        (
            _role_part(organization={"reference": UNKNOWN_UUID}),
            "PractitionerRole",
            ".organization.reference",
            ErrorCode.INVALID,
            "does not resolve",
        ),
        (
            _role_part(organization={"reference": PATIENT_URL}),
            "PractitionerRole",
            ".organization.reference",
            ErrorCode.INVALID,
            "not a Patient",
        ),
        (
            _comm(payload=None),
            "Communication",
            ".payload",
            ErrorCode.REQUIRED,
            "contentString",
        ),
    ],
)
def test_reference_and_rule_violations(
    kind: str, mutate: Mutation, where: str, path: str, code: ErrorCode, words: str
) -> None:
    data = bundle(kind)
    mutate(data, kind)
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (code, at(kind, where) + path), issue
    assert words in issue.diagnostics


def test_problems_in_entries_have_their_place_json_and_xml() -> None:
    data = bundle("transaction")
    patient = data["entry"][0]["resource"]
    patient["identifier"][0]["value"] = "999911121"  # fails the 11-test
    patient["favouriteColour"] = "blue"
    issues = problems(as_json(data))
    assert {(i.code, i.expression) for i in issues} == {
        (ErrorCode.VALUE, "Bundle.entry[0].resource.identifier[0].value"),
        (ErrorCode.INVALID, "Bundle.entry[0].resource.favouriteColour"),
    }
    body = xml_bundle("message").replace(
        f'<reference value="{PATIENT_URL}"/>'.encode(),
        f'<reference value="{UNKNOWN_UUID}"/>'.encode(),
    )
    issue = only(problems(body, XML))
    assert issue.expression == "Bundle.entry[3].resource.subject.reference"
    unknown = xml_bundle("batch").replace(b"<birthDate", b"<shoeSize value='41'/><birthDate")
    assert only(problems(unknown, XML)).expression == "Bundle.entry[0].resource.shoeSize"


@pytest.mark.parametrize("kind", KINDS)
def test_two_communications(kind: str) -> None:
    data = bundle(kind)
    second = copy.deepcopy(entry_of(data, kind, "Communication"))
    second["fullUrl"] = UNKNOWN_UUID
    data["entry"].append(second)
    issue = only(problems(as_json(data)))
    assert issue.code is ErrorCode.INVALID
    assert issue.expression == f"Bundle.entry[{len(data['entry']) - 1}].resource"
    assert "more than one Communication" in issue.diagnostics


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_no_communication(kind: str) -> None:
    entries = parts()
    del entries["Communication"]
    issue = only(problems(as_json(bundle(kind, entries))))
    assert (issue.code, issue.expression) == (ErrorCode.REQUIRED, "Bundle.entry")
    assert "no Communication" in issue.diagnostics
    empty = only(problems(b'{"resourceType": "Bundle", "type": "transaction"}'))
    assert (empty.code, empty.expression) == (ErrorCode.REQUIRED, "Bundle.entry")


@pytest.mark.parametrize(
    "kind",
    ["searchset", "collection", "document", "history", "transaction-response", "batch-response"],
)
def test_other_bundle_types_are_refused(kind: str) -> None:
    data = bundle("transaction")
    data["type"] = kind
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.type")
    assert f"a {kind} Bundle is not accepted" in issue.diagnostics
    assert "transaction, batch, message" in issue.diagnostics
    xml = only(problems(fhirmodel.dump_xml(data), XML))
    assert (xml.code, xml.expression) == (ErrorCode.INVALID, "Bundle.type")


def test_bundle_type_missing_or_unknown() -> None:
    data = bundle("transaction")
    data["type"] = f"bsn-{NICTIZ_BSN}"
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.type")
    assert "a Bundle of this type" in issue.diagnostics
    del data["type"]
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.REQUIRED, "Bundle.type")


def test_message_header_focus_must_be_the_communication() -> None:
    data = bundle("message")
    data["entry"][0]["resource"]["focus"] = [{"reference": PATIENT_URL}]
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (
        ErrorCode.INVALID,
        "Bundle.entry[0].resource.focus[0].reference",
    )
    assert "focus must refer to the Communication" in issue.diagnostics
    data["entry"][0]["resource"]["focus"] = [{"reference": UNKNOWN_UUID}]
    issue = only(problems(as_json(data)))
    assert issue.expression == "Bundle.entry[0].resource.focus[0].reference"
    del data["entry"][0]["resource"]["focus"]
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.REQUIRED, "Bundle.entry[0].resource.focus")
    # Several focus references are fine when one of them is the Communication.
    data["entry"][0]["resource"]["focus"] = [
        {"reference": PATIENT_URL},
        {"reference": COMMUNICATION_URL},
    ]
    assert_golden(fhir_r4.parse_communication(as_json(data), JSON))


def test_message_bundle_starts_with_a_message_header() -> None:
    data = bundle("message")
    data["entry"].append(data["entry"].pop(0))
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.entry[0].resource")
    assert "MessageHeader" in issue.diagnostics


def test_message_entries_have_no_request() -> None:
    data = bundle("message")
    data["entry"][1]["request"] = {"method": "POST", "url": "Patient"}
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.entry[1].request")


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_transaction_requests(kind: str) -> None:
    data = bundle(kind)
    comm = data["entry"][2]
    comm["request"] = {"method": "PUT", "url": "Communication/1"}
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.entry[2].request.method")
    comm["request"] = {"method": "POST", "url": "Patient"}
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.entry[2].request.url")
    comm["request"] = {"method": "POST", "url": "https://wijkbrug.example/fhir/Communication"}
    assert_golden(fhir_r4.parse_communication(as_json(data), JSON))
    del data["entry"][0]["request"]
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.REQUIRED, "Bundle.entry[0].request")
    data["entry"][0]["request"] = {"method": "DELETE", "url": "Patient/1"}
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.entry[0].request.method")
    data["entry"][0]["request"] = {"url": "Patient"}
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.REQUIRED, "Bundle.entry[0].request.method")


def test_entry_shape_rules() -> None:
    data = bundle("transaction")
    data["entry"][3]["fullUrl"] = PATIENT_URL  # the PractitionerRole takes the Patient's
    issues = problems(as_json(data))
    assert (ErrorCode.INVALID, "Bundle.entry[3].fullUrl") in {
        (i.code, i.expression) for i in issues
    }
    data = bundle("transaction")
    data["entry"][4]["response"] = {"status": "201 Created"}
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (ErrorCode.INVALID, "Bundle.entry[4].response")
    data = bundle("transaction")
    del data["entry"][1]["resource"]
    issues = problems(as_json(data))
    assert (ErrorCode.REQUIRED, "Bundle.entry[1].resource") in {
        (i.code, i.expression) for i in issues
    }


def test_ambiguous_relative_reference() -> None:
    data = bundle("transaction")
    data["entry"].append(
        {
            "fullUrl": "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1a05",
            "resource": copy.deepcopy(data["entry"][4]["resource"]),  # Organization/<id> twice
            "request": {"method": "POST", "url": "Organization"},
        }
    )
    issue = only(problems(as_json(data)))
    assert (issue.code, issue.expression) == (
        ErrorCode.INVALID,
        "Bundle.entry[2].resource.recipient[0].reference",
    )
    assert "one entry" in issue.diagnostics


def test_diagnostics_never_show_what_was_sent() -> None:
    data = bundle("transaction")
    comm = data["entry"][2]["resource"]
    comm["subject"] = {"reference": CONDITIONAL}
    comm["sender"] = {"reference": f"urn:uuid:{NICTIZ_BSN}"}
    comm["recipient"] = [{"reference": f"Organization/{NICTIZ_BSN}"}]
    data["entry"][0]["resource"]["name"][0]["text"] = 5  # wrong JSON type near the name
    issues = problems(as_json(data))  # checks that no BSN, name, text or uuid is shown
    assert len(issues) == 4
    outcome = operation_outcome(WijkbrugError.from_issues(issues))
    assert fhirmodel.check(outcome) == []
    for secret in SECRETS:
        assert secret not in json.dumps(outcome)


def test_a_lone_communication_is_read_as_before() -> None:
    # Outside a Bundle a urn:uuid means nothing: the old rule and message apply.
    comm = communication()
    issues = problems(as_json(comm))
    assert {i.expression for i in issues} == {
        "Communication.subject.reference",
        "Communication.sender.identifier",
        "Communication.recipient[0].identifier",
    }
    subject = next(i for i in issues if i.expression == "Communication.subject.reference")
    assert "does not resolve external references" in subject.diagnostics


JUNK: list[Any] = [None, 0, True, "", "x", [], {}, [None], {"x": 1}, "urn:uuid:x", "#"]


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


def test_junk_anywhere_in_a_bundle_is_an_issue_never_a_crash() -> None:
    entries = parts()
    for _, resource in entries.values():
        resource.pop("text", None)
        resource.pop("extension", None)
    original = bundle("message", entries)
    # Leave out the long tails of the Nictiz resources (names, telecom, addresses):
    # the skeleton of the Bundle and its references are where the Bundle logic is.
    skip = {"name", "telecom", "address", "type", "communication", "maritalStatus", "meta"}
    for path in _paths(original):
        if skip.intersection(str(p) for p in path):
            continue
        for junk in JUNK:
            data = copy.deepcopy(original)
            node: Any = data
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = junk
            try:
                msg = fhir_r4.parse_communication(as_json(data), JSON)
            except WijkbrugError as error:
                assert error.all_issues() and all(i.expression for i in error.all_issues())
            else:
                assert fhirmodel.check(msg.resource) == []


@contextlib.contextmanager
def practice_client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app (no homeserver) with the example region, a route for the Nictiz patient's
    postcode (1012 NX), and a practice's integration client: the HTTP client and the
    headers of a FHIR JSON post."""
    settings = load_settings(generate_config(tmp_path))
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        bridge.store.add_route(CareType.WONDZORG, 1011, 1019, "12345678")
        _, token = bridge.store.add_client("01234567", "his")
        yield client, {"Authorization": f"Bearer {token}", "Content-Type": JSON}


def test_process_message_answers_with_a_response_message(tmp_path: Path) -> None:
    """FHIR messaging at ``[base]/$process-message``: the answer names the request's
    MessageHeader and carries the Communication as stored; a re-sent message gets the same
    Communication; anything but a message Bundle is refused with where."""
    with practice_client(tmp_path) as (client, headers):
        entries = parts()
        entries["Communication"][1].pop("recipient")  # to the preferred provider
        message = json.dumps(bundle("message", entries))
        first = client.post("/fhir/$process-message", content=message, headers=headers)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["resourceType"] == "Bundle" and answer["type"] == "message"
        header, communication_entry = (e["resource"] for e in answer["entry"])
        assert header["resourceType"] == "MessageHeader"
        assert header["response"] == {"identifier": HEADER_URL.rsplit(":", 1)[-1], "code": "ok"}
        stored = communication_entry["id"]
        assert header["focus"] == [{"reference": f"Communication/{stored}"}]
        R4Bundle.model_validate(answer)  # a valid R4 message Bundle
        again = client.post("/fhir/$process-message", content=message, headers=headers)
        assert again.json()["entry"][1]["resource"]["id"] == stored
        wrong = client.post(
            "/fhir/$process-message", content=json.dumps(bundle("transaction")), headers=headers
        )
        assert wrong.status_code == 400
        assert wrong.json()["issue"][0]["expression"] == ["Bundle.type"]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_transaction_at_the_base_answers_per_entry(tmp_path: Path, kind: str) -> None:
    """``POST [base]`` with a transaction (batch) Bundle, as FHIR's REST API has it: the
    answer is a transaction-response (batch-response) with one entry per request entry in
    the same order; the Communication's says 201 and where it is, the others that they were
    read as its context. A re-post answers 200 with the same Communication; XML works the
    same; a message Bundle or a bare resource is refused with where."""
    with practice_client(tmp_path) as (client, headers):
        entries = parts()
        entries["Communication"][1].pop("recipient")  # to the preferred provider
        request = bundle(kind, entries)
        first = client.post("/fhir", content=json.dumps(request), headers=headers)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["type"] == f"{kind}-response"
        R4Bundle.model_validate(answer)
        sent_types = [e["resource"]["resourceType"] for e in request["entry"]]
        assert len(answer["entry"]) == len(sent_types) == len(ORDER)
        for sent, got in zip(sent_types, answer["entry"], strict=True):
            if sent == "Communication":
                stored = got["resource"]
                assert got["response"]["status"] == "201 Created"
                assert got["response"]["location"] == f"Communication/{stored['id']}/_history/1"
                assert got["response"]["etag"] == 'W/"1"'
            else:
                assert got["response"]["status"] == "200 OK"
                (issue,) = got["response"]["outcome"]["issue"]
                assert issue["severity"] == "information" and sent in issue["diagnostics"]
        read = client.get(f"/fhir/Communication/{stored['id']}", headers=headers)
        assert read.status_code == 200 and read.json()["identifier"] == stored["identifier"]
        # The same Bundle again (a retry after a lost answer): nothing new.
        again = client.post("/fhir", content=json.dumps(request), headers=headers)
        comm_answer = next(e for e in again.json()["entry"] if "resource" in e)
        assert comm_answer["response"]["status"] == "200 OK"
        assert comm_answer["resource"]["id"] == stored["id"]
        # XML, through the FHIR XML reader and writer, answers in kind.
        as_xml = client.post(
            "/fhir",
            content=xml_bundle(kind),
            headers={**headers, "Content-Type": XML, "Accept": XML},
        )
        assert as_xml.status_code == 200, as_xml.text
        assert as_xml.headers["content-type"].startswith(XML)
        assert f'<type value="{kind}-response"/>' in as_xml.text
        for wrong, where in (
            (bundle("message", parts()), "Bundle.type"),
            (entries["Communication"][1], "resourceType"),
        ):
            refused = client.post("/fhir", content=json.dumps(wrong), headers=headers)
            assert refused.status_code == 400
            assert refused.json()["issue"][0]["expression"] == [where]
