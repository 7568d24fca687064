"""The ``fhir-r4`` dialect: an R4 (4.0.1) Communication in JSON or XML, nl-core style.

    body + Content-Type --load--> FHIR JSON --fhirmodel.check()--> structural issues
                                      |
                 care type, Patient (BSN, postcode), sender (AGB), text, ...
                                      v
               CaseMessage, or WijkbrugError carrying every issue at once

    Reply --render_reply()--> Communication (contained Patient, Practitioner, ...)

What a routed Communication must hold is pinned in DESIGN.md and in the profile
``fhir/StructureDefinition-wijkbrug-Communication.json``. References are resolved
inside the resource only (``#id`` to a contained resource) or taken as logical
references (identifier + display); Wijkbrug never fetches a reference from elsewhere.
Issue diagnostics say what is wrong and where, never what was sent: it is patient data.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from bridge import fhirmodel
from bridge.canonical import (
    CARE_TYPE_SYSTEM,
    CareType,
    CaseMessage,
    Identifier,
    Party,
    Patient,
    Priority,
    Reply,
)
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import (
    AGB_SYSTEM,
    BSN_SYSTEM,
    CASE_SYSTEM,
    MATRIX_SYSTEM,
    MESSAGE_SYSTEM,
    URA_SYSTEM,
    format_postcode,
    is_valid_agb,
    is_valid_bsn,
    is_valid_ura,
    normalise_postcode,
    normalise_system,
)

NAME = "fhir-r4"
FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
MEDIA_TYPES = (FHIR_JSON, "application/json", FHIR_XML, "application/xml")

JsonObject = dict[str, Any]

# R4 EventStatus (Communication.status is bound to it, required).
STATUSES = frozenset(
    {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    }
)
_CARE_CODES = ", ".join(c.value for c in CareType)
_PRIORITIES = ", ".join(p.value for p in Priority)
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+\-]{1,80}/[A-Za-z0-9!#$&^_.+\-]{1,80}$")

# Local ids of the resources contained in a rendered reply.
_PATIENT_ID = "patient"
_PRACTITIONER_ID = "sender"
_ORGANIZATION_ID = "organization"
_ROLE_ID = "sender-role"


# ---------------------------------------------------------------- media types


def media_format(content_type: str) -> str:
    """``"json"`` or ``"xml"`` for a Content-Type header; ``WijkbrugError`` if unsupported."""
    mime, _, raw_params = content_type.partition(";")
    mime = mime.strip().lower() or FHIR_JSON
    params = dict(
        (key.strip().lower(), value.strip().strip('"').lower())
        for key, _, value in (p.partition("=") for p in raw_params.split(";") if p.strip())
    )
    if mime not in MEDIA_TYPES:
        shown = f"{mime} is" if _TOKEN.match(mime) else "this media type is"
        raise WijkbrugError(
            ErrorCode.NOT_SUPPORTED,
            f"{shown} not supported; send one of {', '.join(MEDIA_TYPES)}",
        )
    if params.get("charset", "utf-8") != "utf-8":
        raise WijkbrugError(ErrorCode.NOT_SUPPORTED, "only the UTF-8 charset is supported")
    version = params.get("fhirversion")
    if version is not None and version not in ("4.0", "4.0.1"):
        raise WijkbrugError(
            ErrorCode.NOT_SUPPORTED,
            "this endpoint speaks FHIR 4.0 (R4); STU3 senders use /fhir/stu3",
        )
    return "xml" if mime in (FHIR_XML, "application/xml") else "json"


def response_media_type(accept: str | None, format_param: str | None = None) -> str:
    """The media type to answer in: ``_format`` first, then ``Accept``; JSON by default."""
    if format_param:
        wanted = format_param.strip().lower()
        return FHIR_XML if wanted in ("xml", "text/xml", FHIR_XML, "application/xml") else FHIR_JSON
    best, best_q = FHIR_JSON, 0.0
    for part in (accept or "").split(","):
        mime, _, params = part.partition(";")
        mime = mime.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if mime in (FHIR_XML, "application/xml", "text/xml") and q > best_q:
            best, best_q = FHIR_XML, q
        elif mime in (FHIR_JSON, "application/json", "*/*", "application/*") and q > best_q:
            best, best_q = FHIR_JSON, q
    return best


def to_xml(resource: JsonObject) -> bytes:
    """The FHIR XML form of a resource this module rendered (for ``application/fhir+xml``)."""
    return fhirmodel.dump_xml(resource)


# ---------------------------------------------------------------- parsing


def parse_communication(body: bytes, content_type: str) -> CaseMessage:
    """A GP's R4 Communication (JSON or XML) as a :class:`CaseMessage`.

    Raises ``WijkbrugError`` with every problem found, each with a FHIRPath expression.
    """
    if media_format(content_type) == "xml":
        resource, issues = fhirmodel.load_xml(body)
    else:
        resource, issues = fhirmodel.load_json(body), []
    _require_communication(resource)
    return read_communication(resource, issues)


def _require_communication(resource: JsonObject) -> None:
    sent = resource.get("resourceType")
    if sent == "Communication":
        return
    if sent is None:
        message, code = "resourceType is missing; expected a Communication", ErrorCode.REQUIRED
    elif sent == "Bundle":
        message, code = (
            "a Bundle is not accepted: post the Communication with its Patient and sender "
            "contained",
            ErrorCode.INVALID,
        )
    elif isinstance(sent, str) and fhirmodel.is_resource_type(sent):
        message, code = f"expected a Communication, got a {sent}", ErrorCode.INVALID
    else:
        message, code = "expected a Communication, got an unknown resource type", ErrorCode.INVALID
    raise WijkbrugError.from_issues([Issue(code, message, "Communication.resourceType")])


@dataclass(frozen=True)
class Target:
    """A resource a reference points to, and its FHIRPath (for issues)."""

    resource: JsonObject
    path: str


Resolver = Callable[[str], Target | None]


def read_communication(
    resource: JsonObject,
    prior: list[Issue] | None = None,
    *,
    resolve: Resolver | None = None,
) -> CaseMessage:
    """A :class:`CaseMessage` from an R4 Communication in FHIR JSON.

    ``resolve`` finds the target of a non-local reference (for a Communication that
    arrives in a Bundle); without it only ``#id`` references to contained resources
    resolve. ``prior`` are issues met while loading (e.g. unknown XML elements).
    """
    structural = list(prior or []) + fhirmodel.check(resource)
    issues: list[Issue] = []
    contained = _contained(resource, issues)

    def find(reference: str) -> Target | None:
        if reference.startswith("#"):
            return contained.get(reference[1:])
        return resolve(reference) if resolve is not None else None

    identifier = _identifier(resource, issues)
    care_type = _care_type(resource, issues)
    _status(resource, issues)
    priority = _priority(resource, issues)
    patient = _subject(resource, find, issues)
    sender = _sender(resource, find, issues)
    text = _text_payload(resource, issues)
    recipient_ura = _recipient(resource, find, issues)
    problems = _merge(structural, issues)
    if problems or not (identifier and care_type and patient and sender and text):
        # Each reader reports why it found nothing, so problems is never empty here.
        raise WijkbrugError.from_issues(problems or [Issue(ErrorCode.INVALID, "invalid")])
    return CaseMessage(
        identifier=identifier,
        care_type=care_type,
        patient=patient,
        sender=sender,
        text=text,
        priority=priority,
        sent=_moment(resource.get("sent")),
        recipient_ura=recipient_ura,
        resource=resource,
    )


def _merge(structural: list[Issue], business: list[Issue]) -> list[Issue]:
    """All issues, but one per place: a rule broken under a malformed element is noise."""
    places = [i.expression for i in structural if i.expression]
    out = list(structural)
    for issue in business:
        where = issue.expression or ""
        if any(where == p or where.startswith((p + ".", p + "[")) for p in places):
            continue
        out.append(issue)
    return out


# ------------------------------------------------- small readers of untrusted JSON


def _items(value: Any) -> Iterator[tuple[int, JsonObject]]:
    """The objects of a JSON array with their index (anything else is skipped)."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _str(value: Any) -> str | None:
    """A non-blank string, stripped; else None."""
    return (value.strip() or None) if isinstance(value, str) else None


def _code(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> JsonObject | None:
    return value if isinstance(value, dict) else None


def _contained(resource: JsonObject, issues: list[Issue]) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for index, item in _items(resource.get("contained")):
        path = f"Communication.contained[{index}]"
        local_id = _str(item.get("id"))
        if local_id is None:
            issues.append(Issue(ErrorCode.REQUIRED, "a contained resource needs an id", path))
        elif local_id in out:
            issues.append(Issue(ErrorCode.INVALID, "duplicate contained id", f"{path}.id"))
        else:
            out[local_id] = Target(item, path)
    return out


def _type_of(target: Target) -> str:
    value = target.resource.get("resourceType")
    if isinstance(value, str) and fhirmodel.is_resource_type(value):
        return value
    return "resource of an unknown type"


def _identifiers(resource: JsonObject, path: str) -> list[tuple[str, str, str]]:
    """(normalised system, value, FHIRPath of the value) of a resource's identifiers."""
    out = []
    for index, ident in _items(resource.get("identifier")):
        system = _str(ident.get("system"))
        if system is not None:
            value_path = f"{path}.identifier[{index}].value"
            out.append((normalise_system(system), _str(ident.get("value")) or "", value_path))
    return out


def _logical_identifiers(reference: JsonObject, path: str) -> list[tuple[str, str, str]]:
    """The same for the one identifier of a logical reference."""
    ident = _obj(reference.get("identifier")) or {}
    system = _str(ident.get("system"))
    if system is None:
        return []
    return [(normalise_system(system), _str(ident.get("value")) or "", f"{path}.identifier.value")]


def _human_name(value: Any) -> str | None:
    """The display form of a list of HumanName (official first; text, else given family)."""
    order = {"official": 0, "usual": 1}
    names = sorted((n for _, n in _items(value)), key=lambda n: order.get(str(n.get("use")), 2))
    for name in names:
        if text := _str(name.get("text")):
            return text
        given = name.get("given")
        parts = [_str(g) for g in given] if isinstance(given, list) else []
        parts.append(_str(name.get("family")))
        if joined := " ".join(p for p in parts if p):
            return joined
    return None


def _date(value: Any) -> date | None:
    """A full date; a year or year-month (valid FHIR) is not one."""
    try:
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


def _moment(value: Any) -> datetime | None:
    """A dateTime with a time as datetime; a bare date or year is not a moment."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- the rules


def _identifier(resource: JsonObject, issues: list[Issue]) -> Identifier | None:
    for _, ident in _items(resource.get("identifier")):
        system, value = _str(ident.get("system")), _str(ident.get("value"))
        if system and value:
            return Identifier(normalise_system(system), value)
    issues.append(
        Issue(
            ErrorCode.REQUIRED,
            "an identifier with system and value is required (the sender's own id of the "
            "message; re-posting it returns the stored Communication)",
            "Communication.identifier",
        )
    )
    return None


def _care_type(resource: JsonObject, issues: list[Issue]) -> CareType | None:
    found: list[tuple[str, Any]] = []
    for i, category in _items(resource.get("category")):
        for j, coding in _items(category.get("coding")):
            if coding.get("system") == CARE_TYPE_SYSTEM:
                found.append((f"Communication.category[{i}].coding[{j}].code", coding.get("code")))
    if not found:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                f"a category coding from {CARE_TYPE_SYSTEM} is required ({_CARE_CODES})",
                "Communication.category",
            )
        )
        return None
    care_types: set[CareType] = set()
    for path, code in found:
        try:
            care_types.add(CareType(code))
        except (ValueError, TypeError):
            issues.append(
                Issue(ErrorCode.VALUE, f"unknown care type; allowed codes: {_CARE_CODES}", path)
            )
    if len(care_types) > 1:
        issues.append(
            Issue(ErrorCode.INVALID, "more than one care type given", "Communication.category")
        )
    return care_types.pop() if len(care_types) == 1 else None


def _status(resource: JsonObject, issues: list[Issue]) -> None:
    status = resource.get("status")
    if isinstance(status, str) and status not in STATUSES:
        issues.append(
            Issue(
                ErrorCode.VALUE,
                f"unknown status; allowed: {', '.join(sorted(STATUSES))}",
                "Communication.status",
            )
        )


def _priority(resource: JsonObject, issues: list[Issue]) -> Priority:
    value = resource.get("priority")
    if value is None:
        return Priority.ROUTINE
    try:
        return Priority(value)
    except (ValueError, TypeError):
        issues.append(
            Issue(
                ErrorCode.VALUE,
                f"unknown priority; allowed: {_PRIORITIES}",
                "Communication.priority",
            )
        )
        return Priority.ROUTINE


def _subject(resource: JsonObject, find: Resolver, issues: list[Issue]) -> Patient | None:
    path = "Communication.subject"
    subject = _obj(resource.get("subject"))
    if subject is None:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                "subject is required: a contained Patient ('#id') with BSN and postal code",
                path,
            )
        )
        return None
    reference = _str(subject.get("reference"))
    target = find(reference) if reference else None
    if target is None:
        issues.append(
            Issue(
                ErrorCode.INVALID,
                "the Patient must be contained in the Communication and referenced as "
                "'#id' (Wijkbrug does not resolve external references)"
                if reference is None or not reference.startswith("#")
                else "subject refers to a contained resource that is not there",
                f"{path}.reference",
            )
        )
        return None
    if _type_of(target) != "Patient":
        issues.append(
            Issue(
                ErrorCode.INVALID,
                f"subject must be a Patient, not a {_type_of(target)}",
                f"{path}.reference",
            )
        )
        return None
    return _patient(target, issues)


def _patient(target: Target, issues: list[Issue]) -> Patient | None:
    patient, path = target.resource, target.path
    bsn: str | None = None
    for system, value, value_path in _identifiers(patient, path):
        if system != BSN_SYSTEM:
            continue
        if is_valid_bsn(value):
            bsn = value
        else:
            issues.append(Issue(ErrorCode.VALUE, "the BSN fails the 11-test", value_path))
        break
    else:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                f"the Patient needs a BSN identifier (system {BSN_SYSTEM})",
                f"{path}.identifier",
            )
        )
    postcode = _postcode(patient, path, issues)
    if bsn is None or postcode is None:
        return None
    return Patient(
        bsn=bsn,
        postcode=postcode,
        name=_human_name(patient.get("name")),
        birth_date=_date(patient.get("birthDate")),
    )


def _postcode(patient: JsonObject, path: str, issues: list[Issue]) -> str | None:
    """The postcode the patient lives at: a home (or unmarked) address before others."""
    rank = {"home": 0, "": 1, "temp": 2, "work": 3, "billing": 4}
    candidates = [
        (rank.get(use, 5), index, raw)
        for index, address in _items(patient.get("address"))
        if (use := _code(address.get("use"))) != "old" and (raw := _str(address.get("postalCode")))
    ]
    if not candidates:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                "the Patient needs an address with a postalCode (routing is by postcode)",
                f"{path}.address",
            )
        )
        return None
    _, index, raw = min(candidates)
    postcode = normalise_postcode(raw)
    if postcode is None:
        issues.append(
            Issue(
                ErrorCode.VALUE,
                "not a Dutch postcode (four digits and two letters, e.g. 1092 AB)",
                f"{path}.address[{index}].postalCode",
            )
        )
    return postcode


@dataclass(frozen=True)
class _Person:
    name: str
    agb: str
    identifiers: tuple[Identifier, ...]


@dataclass(frozen=True)
class _Organisation:
    name: str | None = None
    agb: str | None = None
    ura: str | None = None


_SENDER_RULE = (
    "the sender must be a contained Practitioner or PractitionerRole ('#id'), or a "
    f"logical reference with an AGB identifier ({AGB_SYSTEM}) and a display name"
)


def _sender(resource: JsonObject, find: Resolver, issues: list[Issue]) -> Party | None:
    path = "Communication.sender"
    sender = _obj(resource.get("sender"))
    if sender is None:
        issues.append(Issue(ErrorCode.REQUIRED, f"sender is required: {_SENDER_RULE}", path))
        return None
    reference = _str(sender.get("reference"))
    target = find(reference) if reference else None
    if target is None:
        if reference is not None and reference.startswith("#"):
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "sender refers to a contained resource that is not there",
                    f"{path}.reference",
                )
            )
            return None
        person = _logical_practitioner(sender, path, issues)
        return _party(person, _Organisation()) if person else None
    kind = _type_of(target)
    if kind == "Practitioner":
        person = _practitioner(target, issues)
        return _party(person, _Organisation()) if person else None
    if kind == "PractitionerRole":
        return _role(target, find, issues)
    issues.append(Issue(ErrorCode.INVALID, f"{_SENDER_RULE}; got a {kind}", f"{path}.reference"))
    return None


def _party(person: _Person, organisation: _Organisation) -> Party:
    return Party(
        name=person.name,
        agb=person.agb,
        identifiers=person.identifiers,
        organisation_name=organisation.name,
        organisation_agb=organisation.agb,
        organisation_ura=organisation.ura,
    )


def _practitioner(target: Target, issues: list[Issue]) -> _Person | None:
    practitioner, path = target.resource, target.path
    agb: str | None = None
    others: list[Identifier] = []
    for system, value, value_path in _identifiers(practitioner, path):
        if system == AGB_SYSTEM and agb is None:
            if is_valid_agb(value):
                agb = value
            else:
                issues.append(Issue(ErrorCode.VALUE, "an AGB code is 8 digits", value_path))
                agb = ""
        elif value:
            others.append(Identifier(system, value))
    if agb is None:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                f"the practitioner needs an AGB code (system {AGB_SYSTEM})",
                f"{path}.identifier",
            )
        )
    name = _human_name(practitioner.get("name"))
    if name is None:
        issues.append(Issue(ErrorCode.REQUIRED, "the practitioner needs a name", f"{path}.name"))
    if not agb or name is None:
        return None
    return _Person(name, agb, tuple(others))


def _logical_practitioner(reference: JsonObject, path: str, issues: list[Issue]) -> _Person | None:
    """A practitioner given as identifier (AGB) + display, without a resource."""
    agb = [
        (v, where)
        for system, v, where in _logical_identifiers(reference, path)
        if system == AGB_SYSTEM
    ]
    if not agb:
        issues.append(Issue(ErrorCode.REQUIRED, _SENDER_RULE, f"{path}.identifier"))
        return None
    value, value_path = agb[0]
    display = _str(reference.get("display"))
    if not is_valid_agb(value):
        issues.append(Issue(ErrorCode.VALUE, "an AGB code is 8 digits", value_path))
    if display is None:
        issues.append(
            Issue(ErrorCode.REQUIRED, "the practitioner's name is required", f"{path}.display")
        )
    if display is None or not is_valid_agb(value):
        return None
    return _Person(display, value, ())


def _role(target: Target, find: Resolver, issues: list[Issue]) -> Party | None:
    role, path = target.resource, target.path
    practitioner = _obj(role.get("practitioner"))
    person: _Person | None = None
    if practitioner is None:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                "the PractitionerRole needs its practitioner",
                f"{path}.practitioner",
            )
        )
    else:
        reference = _str(practitioner.get("reference"))
        found = find(reference) if reference else None
        if found is not None and _type_of(found) == "Practitioner":
            person = _practitioner(found, issues)
        elif found is not None or (reference or "").startswith("#"):
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "practitioner must refer to a contained Practitioner",
                    f"{path}.practitioner.reference",
                )
            )
        else:
            person = _logical_practitioner(practitioner, f"{path}.practitioner", issues)
    organisation = _organisation(role.get("organization"), f"{path}.organization", find, issues)
    return _party(person, organisation) if person else None


def _organisation(value: Any, path: str, find: Resolver, issues: list[Issue]) -> _Organisation:
    """The sender's organisation, if given: contained, or identifier + display."""
    reference = _obj(value)
    if reference is None:
        return _Organisation()
    ref = _str(reference.get("reference"))
    found = find(ref) if ref else None
    if found is not None and _type_of(found) == "Organization":
        organisation, where = found.resource, found.path
        name = _str(organisation.get("name"))
        ids = _identifiers(organisation, where)
    else:
        name = _str(reference.get("display"))
        ids = _logical_identifiers(reference, path)
    agb = ura = None
    for system, value, value_path in ids:
        if system == AGB_SYSTEM and agb is None:
            agb = value if is_valid_agb(value) else None
            if agb is None:
                issues.append(Issue(ErrorCode.VALUE, "an AGB code is 8 digits", value_path))
        elif system == URA_SYSTEM and ura is None:
            ura = value if is_valid_ura(value) else None
            if ura is None:
                issues.append(Issue(ErrorCode.VALUE, "a URA number is 8 digits", value_path))
    return _Organisation(name, agb, ura)


def _text_payload(resource: JsonObject, issues: list[Issue]) -> str | None:
    payloads = resource.get("payload")
    first = payloads[0] if isinstance(payloads, list) and payloads else None
    if first is None:
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                "payload is required: payload[0].contentString holds the message text",
                "Communication.payload",
            )
        )
        return None
    text = first.get("contentString") if isinstance(first, dict) else None
    if not isinstance(text, str) or not text.strip():
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                "the message text (payload[0].contentString) is required and may not be blank",
                "Communication.payload[0].contentString",
            )
        )
        return None
    return text


def _recipient(resource: JsonObject, find: Resolver, issues: list[Issue]) -> str | None:
    recipients = list(_items(resource.get("recipient")))
    if not recipients:
        return None
    if len(recipients) > 1:
        issues.append(
            Issue(
                ErrorCode.INVALID,
                "only one recipient is supported (leave it out to route by preferred provider)",
                "Communication.recipient",
            )
        )
        return None
    _, recipient = recipients[0]
    path = "Communication.recipient[0]"
    reference = _str(recipient.get("reference"))
    found = find(reference) if reference else None
    if found is not None and _type_of(found) == "Organization":
        ids = _identifiers(found.resource, found.path)
        missing_at = f"{found.path}.identifier"
    elif found is None and not (reference or "").startswith("#"):
        ids = _logical_identifiers(recipient, path)
        missing_at = f"{path}.identifier"
    else:
        issues.append(
            Issue(
                ErrorCode.INVALID,
                "the recipient must be a contained Organization or a logical reference "
                "with a URA identifier",
                f"{path}.reference",
            )
        )
        return None
    for system, value, value_path in ids:
        if system == URA_SYSTEM:
            if is_valid_ura(value):
                return value
            issues.append(Issue(ErrorCode.VALUE, "a URA number is 8 digits", value_path))
            return None
    issues.append(
        Issue(
            ErrorCode.REQUIRED,
            f"the recipient organisation needs a URA identifier (system {URA_SYSTEM})",
            missing_at,
        )
    )
    return None


# ---------------------------------------------------------------- rendering


def fhir_instant(moment: datetime) -> str:
    """A FHIR ``instant`` in UTC. A naive datetime is taken as UTC.

    Python's ISO form (microseconds only when non-zero) is also the one the R4B models
    write, so a rendered resource survives a trip through them unchanged.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def communication_for_case_message(
    msg: CaseMessage,
    *,
    id: str,
    status: str,
    last_updated: datetime,
    case_number: str | None,
) -> JsonObject:
    """The stored Communication for an accepted GP message (``GET /fhir/Communication/id``).

    The sender's resource, with Wijkbrug's id, meta, status and the case number added.
    """
    original = copy.deepcopy(msg.resource)
    meta = {
        key: value
        for key, value in (_obj(original.get("meta")) or {}).items()
        if key not in ("versionId", "lastUpdated")
    }
    out: JsonObject = {
        "resourceType": "Communication",
        "id": id,
        "meta": {"versionId": "1", "lastUpdated": fhir_instant(last_updated), **meta},
    }
    out.update((k, v) for k, v in original.items() if k not in out)
    out["status"] = status
    if case_number:
        identifiers = [
            ident
            for _, ident in _items(original.get("identifier"))
            if ident.get("system") != CASE_SYSTEM
        ]
        identifiers.append({"use": "secondary", "system": CASE_SYSTEM, "value": case_number})
        out["identifier"] = identifiers
    return out


def render_reply(reply: Reply, *, last_updated: datetime) -> JsonObject:
    """A nurse's answer as an R4 Communication for the practice's system."""
    sender = reply.sender
    contained: list[JsonObject] = []
    if reply.patient is not None:
        contained.append(_patient_resource(reply.patient))
    contained.append(_practitioner_resource(sender))
    has_organisation = bool(
        sender.organisation_name or sender.organisation_ura or sender.organisation_agb
    )
    if has_organisation:
        contained.append(_organization_resource(sender))
        contained.append(_role_resource(sender))
    identifiers = [{"system": MESSAGE_SYSTEM, "value": reply.id}]
    if reply.case_number:
        identifiers.append({"use": "secondary", "system": CASE_SYSTEM, "value": reply.case_number})
    out: JsonObject = {
        "resourceType": "Communication",
        "id": reply.id,
        "meta": {"versionId": "1", "lastUpdated": fhir_instant(last_updated)},
        "contained": contained,
        "identifier": identifiers,
    }
    if reply.in_response_to:
        out["inResponseTo"] = [{"reference": f"Communication/{reply.in_response_to}"}]
    out["status"] = "completed"
    out["category"] = [_care_type_concept(reply.care_type)]
    if reply.patient is not None:
        out["subject"] = {"reference": f"#{_PATIENT_ID}", "type": "Patient"}
    out["sent"] = fhir_instant(reply.sent)
    sender_id = _ROLE_ID if has_organisation else _PRACTITIONER_ID
    display = sender.name + (f" ({sender.organisation_name})" if sender.organisation_name else "")
    out["sender"] = {"reference": f"#{sender_id}", "display": display}
    out["payload"] = [{"contentString": reply.text}]
    return out


def _care_type_concept(care_type: CareType) -> JsonObject:
    coding = {"system": CARE_TYPE_SYSTEM, "code": care_type.value, "display": care_type.display}
    return {"coding": [coding]}


def _patient_resource(patient: Patient) -> JsonObject:
    out: JsonObject = {
        "resourceType": "Patient",
        "id": _PATIENT_ID,
        "identifier": [{"system": BSN_SYSTEM, "value": patient.bsn}],
    }
    if patient.name:
        out["name"] = [{"text": patient.name}]
    if patient.birth_date:
        out["birthDate"] = patient.birth_date.isoformat()
    out["address"] = [{"postalCode": format_postcode(patient.postcode), "country": "NL"}]
    return out


def _practitioner_resource(sender: Party) -> JsonObject:
    identifiers: list[JsonObject] = []
    if sender.matrix_id:
        identifiers.append({"system": MATRIX_SYSTEM, "value": sender.matrix_id})
    if sender.agb:
        identifiers.append({"system": AGB_SYSTEM, "value": sender.agb})
    identifiers.extend({"system": i.system, "value": i.value} for i in sender.identifiers)
    out: JsonObject = {"resourceType": "Practitioner", "id": _PRACTITIONER_ID}
    if identifiers:
        out["identifier"] = identifiers
    out["name"] = [{"text": sender.name}]
    return out


def _organization_resource(sender: Party) -> JsonObject:
    identifiers: list[JsonObject] = []
    if sender.organisation_ura:
        identifiers.append({"system": URA_SYSTEM, "value": sender.organisation_ura})
    if sender.organisation_agb:
        identifiers.append({"system": AGB_SYSTEM, "value": sender.organisation_agb})
    out: JsonObject = {"resourceType": "Organization", "id": _ORGANIZATION_ID}
    if identifiers:
        out["identifier"] = identifiers
    if sender.organisation_name:
        out["name"] = sender.organisation_name
    return out


def _role_resource(sender: Party) -> JsonObject:
    organization: JsonObject = {"reference": f"#{_ORGANIZATION_ID}", "type": "Organization"}
    if sender.organisation_name:
        organization["display"] = sender.organisation_name
    return {
        "resourceType": "PractitionerRole",
        "id": _ROLE_ID,
        "practitioner": {
            "reference": f"#{_PRACTITIONER_ID}",
            "type": "Practitioner",
            "display": sender.name,
        },
        "organization": organization,
    }
