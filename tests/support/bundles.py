"""FHIR R4 Bundles built around the public Nictiz zib2020 examples, as a practice system
sends them: a Communication with the Nictiz Patient, Practitioner, PractitionerRole and
Organization as entries of their own (unchanged: their own ids, narrative and the
PractitionerRole's relative reference ``Practitioner/<id>``), in JSON and in XML (the
Nictiz XML embedded as published). Used by the Bundle tests, the end-to-end test and the
dialect benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from bridge import fhirmodel

REPO = Path(__file__).resolve().parents[2]
NICTIZ = REPO / "tests" / "data" / "nictiz" / "R4-zib2020"

Json = dict[str, Any]
JSON = "application/fhir+json"
XML = "application/fhir+xml"
FHIR_NS = fhirmodel.FHIR_NS
NICTIZ_BSN = "111222333"  # the BSN of nl-core-Patient-01
SENDER_ID = "urn:oid:2.16.528.1.1007.3.3.01999999.1"  # the HIS's own message ids
TEXT = "Graag wondcontrole na ontslag; verband dagelijks verwisselen."
CARE_TYPE = "https://wijkbrug.nl/fhir/CodeSystem/care-type"

# How the entries are addressed: the ways R4 resolves references inside a Bundle.
PATIENT_URL = "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1a01"
PRACTITIONER_ID = "nl-core-SOAPReport-01-Practitioner-01"
PRACTITIONER_URL = f"https://his.example/fhir/Practitioner/{PRACTITIONER_ID}"
COMMUNICATION_URL = "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1a02"
ROLE_URL = "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1a03"
ORGANIZATION_ID = "nl-core-HealthcareProvider-Organization-01"
ORGANIZATION_URL = "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1a04"
HEADER_URL = "urn:uuid:2f2f6a48-9b1e-4c9d-8e0a-6d1b5f0c1a00"

KINDS = ("transaction", "batch", "message")
# The entries in the order they are sent (a message Bundle puts its MessageHeader first).
ORDER = ("Patient", "Practitioner", "Communication", "PractitionerRole", "Organization")

# ---------------------------------------------------------------- building inputs


def nictiz(name: str) -> Json:
    """A Nictiz example as FHIR JSON, exactly as published (id, narrative and all)."""
    resource, issues = fhirmodel.load_xml((NICTIZ / f"{name}.xml").read_bytes())
    assert issues == []
    return resource


def communication(**changes: Any) -> Json:
    """The GP's Communication; its subject and sender point at other entries."""
    out: Json = {
        "resourceType": "Communication",
        "identifier": [{"system": SENDER_ID, "value": "msg-1"}],
        "status": "in-progress",
        "category": [{"coding": [{"system": CARE_TYPE, "code": "wondzorg"}]}],
        "subject": {"reference": PATIENT_URL},  # urn:uuid, the entry's fullUrl
        "sent": "2026-11-25T09:30:00+01:00",
        "sender": {"reference": ROLE_URL},
        # Relative, by type and id: the Organization entry's fullUrl is a urn:uuid.
        "recipient": [{"reference": f"Organization/{ORGANIZATION_ID}"}],
        "payload": [{"contentString": TEXT}],
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def role() -> Json:
    """The Nictiz PractitionerRole; it refers to its Practitioner as ``Practitioner/<id>``."""
    out = nictiz("nl-core-SOAPReport-01-PractitionerRole-01")
    assert out["practitioner"]["reference"] == f"Practitioner/{PRACTITIONER_ID}"
    out["organization"] = {"reference": ORGANIZATION_URL}
    return out


def parts() -> dict[str, tuple[str, Json]]:
    """fullUrl and resource of each entry, by resource type."""
    return {
        "Patient": (PATIENT_URL, nictiz("nl-core-Patient-01")),
        "Practitioner": (PRACTITIONER_URL, nictiz("nl-core-SOAPReport-01-Practitioner-01")),
        "Communication": (COMMUNICATION_URL, communication()),
        "PractitionerRole": (ROLE_URL, role()),
        "Organization": (ORGANIZATION_URL, nictiz("nl-core-HealthcareProvider-Organization-01")),
    }


def message_header(focus: str = COMMUNICATION_URL) -> Json:
    return {
        "resourceType": "MessageHeader",
        "eventCoding": {"system": "http://his.example/fhir/message-events", "code": "verwijzing"},
        "source": {"endpoint": "https://his.example/fhir"},
        "focus": [{"reference": focus}],
    }


def bundle(kind: str, entries: dict[str, tuple[str, Json]] | None = None) -> Json:
    """A Bundle of the entries; transaction and batch entries get their request."""
    chosen = parts() if entries is None else entries
    out: list[Json] = []
    if kind == "message":
        out.append({"fullUrl": HEADER_URL, "resource": message_header()})
    for full_url, resource in chosen.values():
        entry: Json = {"fullUrl": full_url, "resource": resource}
        if kind != "message":
            if full_url.startswith("https:"):  # an update of the HIS's own resource
                entry["request"] = {"method": "PUT", "url": full_url.partition("/fhir/")[2]}
            else:
                entry["request"] = {"method": "POST", "url": resource["resourceType"]}
        out.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": out}


def at(kind: str, resource_type: str) -> str:
    """The FHIRPath of an entry's resource in a Bundle made by :func:`bundle`."""
    index = ORDER.index(resource_type) + (1 if kind == "message" else 0)
    return f"Bundle.entry[{index}].resource"


def entry_of(data: Json, kind: str, resource_type: str) -> Json:
    index = ORDER.index(resource_type) + (1 if kind == "message" else 0)
    found: Json = data["entry"][index]
    return found


def as_json(resource: Json) -> bytes:
    return json.dumps(resource, ensure_ascii=False).encode()


def xml_element(tag: str, value: str) -> Any:
    el = etree.Element(f"{{{FHIR_NS}}}{tag}")
    el.set("value", value)
    return el


def xml_bundle(kind: str) -> bytes:
    """The golden Bundle in XML, built around the Nictiz XML files as published."""
    root = etree.Element(f"{{{FHIR_NS}}}Bundle", nsmap={None: FHIR_NS})
    root.append(xml_element("type", kind))
    role_xml = etree.fromstring(
        (NICTIZ / "nl-core-SOAPReport-01-PractitionerRole-01.xml").read_bytes()
    )
    organization = etree.SubElement(role_xml, f"{{{FHIR_NS}}}organization")
    organization.append(xml_element("reference", ORGANIZATION_URL))
    resources: dict[str, Any] = {
        "Patient": etree.fromstring((NICTIZ / "nl-core-Patient-01.xml").read_bytes()),
        "Practitioner": etree.fromstring(
            (NICTIZ / "nl-core-SOAPReport-01-Practitioner-01.xml").read_bytes()
        ),
        "Communication": etree.fromstring(fhirmodel.dump_xml(communication())),
        "PractitionerRole": role_xml,
        "Organization": etree.fromstring(
            (NICTIZ / "nl-core-HealthcareProvider-Organization-01.xml").read_bytes()
        ),
    }
    requests = {k: ("POST", k) for k in resources}
    requests["Practitioner"] = ("PUT", f"Practitioner/{PRACTITIONER_ID}")
    if kind == "message":
        header = etree.fromstring(fhirmodel.dump_xml(message_header()))
        resources = {"MessageHeader": header, **resources}
    urls = {name: url for name, (url, _) in parts().items()} | {"MessageHeader": HEADER_URL}
    for name, element in resources.items():
        entry = etree.SubElement(root, f"{{{FHIR_NS}}}entry")
        entry.append(xml_element("fullUrl", urls[name]))
        etree.SubElement(entry, f"{{{FHIR_NS}}}resource").append(element)
        if kind != "message":
            request = etree.SubElement(entry, f"{{{FHIR_NS}}}request")
            method, url = requests[name]
            request.append(xml_element("method", method))
            request.append(xml_element("url", url))
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out
