"""The ``fhir-r4`` dialect: an R4 (4.0.1) Communication in JSON or XML, nl-core style.

    body + Content-Type --load--> FHIR JSON --fhirmodel.check()--> structural issues
                                      |
          Communication --------------+------------- transaction/batch/message Bundle
                |                                       | the one Communication entry;
                |                                       | references between entries
                |                                       v resolved (urn:uuid, URL, Type/id)
                 care type, Patient (BSN, postcode), sender (AGB), text, ...
                                      v
               CaseMessage, or WijkbrugError carrying every issue at once
               (from a Bundle: the Communication, its referenced entries contained)

    Reply --render_reply()--> Communication (contained Patient, Practitioner, ...)

What a routed Communication must hold is pinned in DESIGN.md and in the profile
``fhir/StructureDefinition-wijkbrug-Communication.json``. A Communication posted alone
refers to its Patient and sender as ``#id`` (contained) or by logical reference
(identifier + display). Posted in a Bundle, it may also refer to the Bundle's other entries;
those are resolved inside the Bundle only, never fetched. Issue diagnostics say what is
wrong and where, never what was sent: it is patient data (and so are references, which
may carry a BSN in a conditional reference).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from adapters.fhir_media import FHIR_JSON as FHIR_JSON
from adapters.fhir_media import FHIR_XML as FHIR_XML
from adapters.fhir_media import FhirMedia
from bridge import fhirmodel
from bridge.canonical import (
    CARE_TYPE_SYSTEM,
    Attachment,
    CareType,
    CaseMessage,
    Identifier,
    Party,
    Patient,
    Priority,
    ProviderReply,
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
# The codes as they are sent (a dict lookup: the Enum call costs several times as much).
_CARE_TYPES = {c.value: c for c in CareType}
_PRIORITY_CODES = {p.value: p for p in Priority}
_ROUTINE = Priority.ROUTINE

# Local ids of the resources contained in a rendered reply.
_PATIENT_ID = "patient"
_PRACTITIONER_ID = "sender"
_ORGANIZATION_ID = "organization"
_ROLE_ID = "sender-role"


# ---------------------------------------------------------------- media types


def media_format(content_type: str) -> str:
    """``"json"`` or ``"xml"`` for a Content-Type header; ``WijkbrugError`` if unsupported."""
    return _MEDIA.media_format(content_type)


def response_media_type(accept: str | None, format_param: str | None = None) -> str:
    """The media type to answer in: ``_format`` first, then ``Accept``; JSON by default."""
    return _MEDIA.response_media_type(accept, format_param)


_MEDIA = FhirMedia(
    (FHIR_JSON, "application/json"),
    (FHIR_XML, "application/xml"),
    ("4.0", "4.0.1"),
    "this endpoint speaks FHIR 4.0 (R4); STU3 senders use /fhir/stu3",
)


def to_xml(resource: JsonObject) -> bytes:
    """The FHIR XML form of a resource this module rendered (for ``application/fhir+xml``)."""
    return fhirmodel.dump_xml(resource)


# ---------------------------------------------------------------- parsing


def parse_communication(body: bytes, content_type: str) -> CaseMessage:
    """A GP's R4 Communication (JSON or XML) as a :class:`CaseMessage`.

    The Communication comes alone, or as the one Communication of a ``transaction``,
    ``batch`` or ``message`` Bundle (see :func:`read_bundle`). Raises ``WijkbrugError``
    with every problem found, each with a FHIRPath expression.
    """
    if media_format(content_type) == "xml":
        resource, issues = fhirmodel.load_xml(body)
        json_checked = False
    else:
        resource, systems = fhirmodel.load_json_checked(body)
        issues, json_checked = [], systems is not None
    if resource.get("resourceType") == "Bundle":
        return read_bundle(resource, issues, json_checked=json_checked)
    _require_communication(resource)
    return read_communication(resource, issues, json_checked=json_checked)


def parse_provider_reply(body: bytes, content_type: str) -> ProviderReply:
    """An ECD's reply (R4 JSON or XML): a Communication with ``inResponseTo`` naming the
    practice's message (``Communication/{id}`` as Wijkbrug gave it), the nurse as
    ``sender`` (a contained Practitioner with a name, or a ``display``), the text in
    ``payload[0].contentString`` and files after it. Patient and care type are the case's."""
    if media_format(content_type) == "xml":
        resource, issues = fhirmodel.load_xml(body)
    else:
        resource, issues = fhirmodel.load_json(body), []
    _require_communication(resource)
    structural = issues + fhirmodel.check(resource)
    found: list[Issue] = []
    refs = _References(_contained(resource, "Communication", found), None)
    identifier = _identifier(resource, found)
    answered = _answered(resource, found)
    nurse = _nurse(resource, refs, found)
    text = _text_payload(resource, found)
    attachments = _attachments(resource, found)
    problems = _merge(structural, found)
    if problems or not (identifier and answered and nurse and text):
        raise WijkbrugError.from_issues(problems or [Issue(ErrorCode.INVALID, "invalid")])
    return ProviderReply(identifier, answered, nurse, text, attachments)


def _answered(resource: JsonObject, issues: list[Issue]) -> str | None:
    refs = [_str(r.get("reference")) for _, r in _items(resource.get("inResponseTo"))]
    if len(refs) != 1 or refs[0] is None or not refs[0].startswith("Communication/"):
        issues.append(
            Issue(
                ErrorCode.REQUIRED,
                "a reply names the message it answers: inResponseTo = Communication/{id}",
                "Communication.inResponseTo",
            )
        )
        return None
    return refs[0].removeprefix("Communication/").split("/_history")[0]


def _nurse(resource: JsonObject, refs: _References, issues: list[Issue]) -> Party | None:
    path = "Communication.sender"
    sender = _obj(resource.get("sender"))
    target = refs.find(_str(sender.get("reference"))) if sender else None
    if target is not None and _type_of(target) == "Practitioner":
        name = _human_name(target.resource.get("name"))
        others = tuple(
            Identifier(system, value)
            for system, value, _ in _identifiers(target.resource, target.path)
            if value
        )
        agb = next((i.value for i in others if i.system == AGB_SYSTEM), None)
        if name:
            return Party(name=name, agb=agb, identifiers=others)
    elif sender is not None and (display := _str(sender.get("display"))):
        return Party(name=display)
    issues.append(
        Issue(
            ErrorCode.REQUIRED,
            "the nurse who answers: a contained Practitioner with a name, or a display",
            path,
        )
    )
    return None


def _require_communication(resource: JsonObject) -> None:
    sent = resource.get("resourceType")
    if sent == "Communication":
        return
    if sent is None:
        message, code = "resourceType is missing; expected a Communication", ErrorCode.REQUIRED
    elif isinstance(sent, str) and fhirmodel.is_resource_type(sent):
        message, code = f"expected a Communication, got a {sent}", ErrorCode.INVALID
    else:
        message, code = "expected a Communication, got an unknown resource type", ErrorCode.INVALID
    raise WijkbrugError.from_issues([Issue(code, message, "Communication.resourceType")])


class Target(NamedTuple):
    """A resource a reference points to, and its FHIRPath (for issues).

    ``entry`` marks a resource of its own in a Bundle (``Bundle.entry[n].resource``): its
    ``#id`` references point into its own ``contained``, not the Communication's.
    """

    resource: JsonObject
    path: str
    entry: bool = False


Resolver = Callable[[str], Target | None]


def read_communication(
    resource: JsonObject,
    prior: list[Issue] | None = None,
    *,
    resolve: Resolver | None = None,
    json_checked: bool = False,
) -> CaseMessage:
    """A :class:`CaseMessage` from an R4 Communication in FHIR JSON.

    ``resolve`` finds the target of a non-local reference (for a Communication that
    arrives in a Bundle); without it only ``#id`` references to contained resources
    resolve. With it, a literal reference it cannot resolve is an issue (inside a Bundle
    it cannot be a reference to elsewhere). ``prior`` are issues met while loading
    (e.g. unknown XML elements). ``json_checked``: the resource was built from input
    that passed the FHIR JSON rules (see :func:`fhirmodel.check`).
    """
    structural = list(prior or []) + fhirmodel.check(resource, json_rules=not json_checked)
    msg, issues = _apply_rules(resource, resolve)
    problems = _merge(structural, issues)
    if problems or msg is None:
        # Each reader reports why it found nothing, so problems is never empty here.
        raise WijkbrugError.from_issues(problems or [Issue(ErrorCode.INVALID, "invalid")])
    return msg


def _apply_rules(
    resource: JsonObject, resolve: Resolver | None
) -> tuple[CaseMessage | None, list[Issue]]:
    """The business rules over a Communication: the message, or None and why not."""
    issues: list[Issue] = []
    refs = _References(_contained(resource, "Communication", issues), resolve)
    identifier = _identifier(resource, issues)
    care_type = _care_type(resource, issues)
    _status(resource, issues)
    priority = _priority(resource, issues)
    patient = _subject(resource, refs, issues)
    sender = _sender(resource, refs, issues)
    text = _text_payload(resource, issues)
    attachments = _attachments(resource, issues)
    recipient_ura = _recipient(resource, refs, issues)
    if issues or not (identifier and care_type and patient and sender and text):
        return None, issues
    msg = CaseMessage(
        identifier=identifier,
        care_type=care_type,
        patient=patient,
        sender=sender,
        text=text,
        priority=priority,
        sent=_moment(resource.get("sent")),
        recipient_ura=recipient_ura,
        resource=resource,
        attachments=attachments,
    )
    return msg, issues


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


class _References:
    """Where the references of one resource point.

    ``#id`` to the resources it contains; anything else through the Bundle's resolver
    when the Communication came in a Bundle (and nowhere when it came alone).
    """

    def __init__(self, contained: dict[str, Target], resolve: Resolver | None) -> None:
        self._contained = contained
        self._resolve = resolve

    @property
    def in_bundle(self) -> bool:
        return self._resolve is not None

    def find(self, reference: str | None) -> Target | None:
        if reference is None:
            return None
        if reference.startswith("#"):
            return self._contained.get(reference[1:])
        return self._resolve(reference) if self._resolve is not None else None

    def dangling(self, reference: str | None) -> bool:
        """A literal reference that must resolve here and does not.

        ``#id`` always must; in a Bundle every literal reference must (an entry's
        ``urn:uuid:`` means nothing outside it, and Wijkbrug fetches nothing).
        """
        if reference is None or not (reference.startswith("#") or self.in_bundle):
            return False
        return self.find(reference) is None

    def within(self, target: Target, issues: list[Issue]) -> _References:
        """The references made by a resolved resource (a Bundle entry has its own ``#id``)."""
        if not target.entry:
            return self
        return _References(_contained(target.resource, target.path, issues), self._resolve)

    def sender_rule(self) -> str:
        return _SENDER_RULE_IN_BUNDLE if self.in_bundle else _SENDER_RULE


def _dangling(what: str, reference: str, path: str) -> Issue:
    """The issue for a reference that does not resolve (never showing the reference)."""
    if reference.startswith("#"):
        return Issue(
            ErrorCode.INVALID, f"{what} refers to a contained resource that is not there", path
        )
    return Issue(
        ErrorCode.INVALID,
        f"{what} does not resolve to one entry of the Bundle: refer to an entry by its "
        "fullUrl (e.g. urn:uuid:...) or by Type/id of its resource, or to a contained "
        "resource by '#id'",
        path,
    )


# ------------------------------------------------- small readers of untrusted JSON


def _items(value: Any) -> list[tuple[int, JsonObject]]:
    """The objects of a JSON array with their index (anything else is skipped)."""
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


def _str(value: Any) -> str | None:
    """A non-blank string, stripped; else None."""
    return (value.strip() or None) if isinstance(value, str) else None


def _code(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> JsonObject | None:
    return value if isinstance(value, dict) else None


def _contained(resource: JsonObject, where: str, issues: list[Issue]) -> dict[str, Target]:
    """The contained resources of the resource at ``where``, by local id."""
    out: dict[str, Target] = {}
    for index, item in _items(resource.get("contained")):
        path = f"{where}.contained[{index}]"
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
    names = [n for _, n in _items(value)]
    if len(names) > 1:
        order = {"official": 0, "usual": 1}
        names.sort(key=lambda n: order.get(str(n.get("use")), 2))
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
        care_type = _CARE_TYPES.get(code) if isinstance(code, str) else None
        if care_type is not None:
            care_types.add(care_type)
        else:
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
        return _ROUTINE
    priority = _PRIORITY_CODES.get(value) if isinstance(value, str) else None
    if priority is None:
        issues.append(
            Issue(
                ErrorCode.VALUE,
                f"unknown priority; allowed: {_PRIORITIES}",
                "Communication.priority",
            )
        )
        return _ROUTINE
    return priority


def _subject(resource: JsonObject, refs: _References, issues: list[Issue]) -> Patient | None:
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
    target = refs.find(reference)
    if target is None:
        if reference is not None and refs.dangling(reference):
            issues.append(_dangling("subject", reference, f"{path}.reference"))
        elif refs.in_bundle:
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "subject must refer to the Patient: an entry of the Bundle (its fullUrl, "
                    "or Patient/id) or a contained Patient ('#id')",
                    f"{path}.reference",
                )
            )
        else:
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "the Patient must be contained in the Communication and referenced as "
                    "'#id' (Wijkbrug does not resolve external references)",
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


_ADDRESS_RANK = {"home": 0, "": 1, "temp": 2, "work": 3, "billing": 4}


def _postcode(patient: JsonObject, path: str, issues: list[Issue]) -> str | None:
    """The postcode the patient lives at: a home (or unmarked) address before others."""
    candidates = [
        (_ADDRESS_RANK.get(use, 5), index, raw)
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


# Small records of the rules are named tuples: made several times for every message, and
# a frozen dataclass costs several times as much to make.
class _Person(NamedTuple):
    name: str
    agb: str
    identifiers: tuple[Identifier, ...]


class _Organisation(NamedTuple):
    name: str | None = None
    agb: str | None = None
    ura: str | None = None


_SENDER_RULE = (
    "the sender must be a contained Practitioner or PractitionerRole ('#id'), or a "
    f"logical reference with an AGB identifier ({AGB_SYSTEM}) and a display name"
)
_SENDER_RULE_IN_BUNDLE = (
    "the sender must be a Practitioner or PractitionerRole of the Bundle (an entry, or "
    f"contained), or a logical reference with an AGB identifier ({AGB_SYSTEM}) and a "
    "display name"
)


def _sender(resource: JsonObject, refs: _References, issues: list[Issue]) -> Party | None:
    path = "Communication.sender"
    rule = refs.sender_rule()
    sender = _obj(resource.get("sender"))
    if sender is None:
        issues.append(Issue(ErrorCode.REQUIRED, f"sender is required: {rule}", path))
        return None
    reference = _str(sender.get("reference"))
    target = refs.find(reference)
    if target is None:
        if reference is not None and refs.dangling(reference):
            issues.append(_dangling("sender", reference, f"{path}.reference"))
            return None
        person = _logical_practitioner(sender, path, rule, issues)
        return _party(person, _Organisation()) if person else None
    kind = _type_of(target)
    if kind == "Practitioner":
        person = _practitioner(target, issues)
        return _party(person, _Organisation()) if person else None
    if kind == "PractitionerRole":
        return _role(target, refs.within(target, issues), issues)
    issues.append(Issue(ErrorCode.INVALID, f"{rule}; got a {kind}", f"{path}.reference"))
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


def _logical_practitioner(
    reference: JsonObject, path: str, rule: str, issues: list[Issue]
) -> _Person | None:
    """A practitioner given as identifier (AGB) + display, without a resource."""
    agb = [
        (v, where)
        for system, v, where in _logical_identifiers(reference, path)
        if system == AGB_SYSTEM
    ]
    if not agb:
        issues.append(Issue(ErrorCode.REQUIRED, rule, f"{path}.identifier"))
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


def _role(target: Target, refs: _References, issues: list[Issue]) -> Party | None:
    """A PractitionerRole sender; ``refs`` are the role's own (see ``_References.within``)."""
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
        found = refs.find(reference)
        if found is not None and _type_of(found) == "Practitioner":
            person = _practitioner(found, issues)
        elif refs.in_bundle and reference is not None and found is None:
            issues.append(_dangling("practitioner", reference, f"{path}.practitioner.reference"))
        elif found is not None or (reference or "").startswith("#"):
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "practitioner must refer to a Practitioner of the Bundle"
                    if refs.in_bundle
                    else "practitioner must refer to a contained Practitioner",
                    f"{path}.practitioner.reference",
                )
            )
        else:
            person = _logical_practitioner(
                practitioner, f"{path}.practitioner", refs.sender_rule(), issues
            )
    organisation = _organisation(role.get("organization"), f"{path}.organization", refs, issues)
    return _party(person, organisation) if person else None


def _organisation(value: Any, path: str, refs: _References, issues: list[Issue]) -> _Organisation:
    """The organisation of a PractitionerRole: the Organization it refers to, or identifier
    and display."""
    reference = _obj(value)
    if reference is None:
        return _Organisation()
    ref = _str(reference.get("reference"))
    found = refs.find(ref)
    if refs.in_bundle and ref is not None and (found is None or _type_of(found) != "Organization"):
        # Outside a Bundle such a reference is left for the display and identifier.
        issues.append(
            _dangling("organization", ref, f"{path}.reference")
            if found is None
            else Issue(
                ErrorCode.INVALID,
                f"organization must refer to an Organization, not a {_type_of(found)}",
                f"{path}.reference",
            )
        )
        return _Organisation()
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


def _attachments(resource: JsonObject, issues: list[Issue]) -> tuple[Attachment, ...]:
    """The files of ``payload[1..]``: each an ``Attachment`` with its contents in ``data``
    (Wijkbrug fetches nothing from a ``url``). Whether a file's type and size are allowed
    is the region's policy, checked when the message is accepted."""
    out: list[Attachment] = []
    for index, payload in _items(resource.get("payload")):
        if index == 0:
            continue  # the message text (see _text_payload)
        where = f"Communication.payload[{index}]"
        if "contentReference" in payload:
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "a payload that refers to a resource is not carried; send the file itself "
                    "as contentAttachment",
                    f"{where}.contentReference",
                )
            )
            continue
        att = payload.get("contentAttachment")
        if not isinstance(att, dict):
            continue  # more text (contentString): the structure rules have checked it
        where = f"{where}.contentAttachment"
        data = att.get("data")
        if not isinstance(data, str) or not data:
            issues.append(
                Issue(
                    ErrorCode.REQUIRED,
                    "a file must carry its contents in data (base64); Wijkbrug does not "
                    "fetch files from a url",
                    f"{where}.data",
                )
            )
            continue
        try:
            contents = base64.b64decode(data, validate=True)
        except ValueError:
            issues.append(Issue(ErrorCode.VALUE, "data is not valid base64", f"{where}.data"))
            continue
        content_type = att.get("contentType")
        if not isinstance(content_type, str) or not content_type:
            issues.append(
                Issue(ErrorCode.REQUIRED, "a file needs its contentType", f"{where}.contentType")
            )
            continue
        size = att.get("size")
        if isinstance(size, int) and size != len(contents):
            issues.append(
                Issue(
                    ErrorCode.VALUE,
                    f"size says {size} bytes, data holds {len(contents)}",
                    f"{where}.size",
                )
            )
            continue
        sha1 = att.get("hash")
        if isinstance(sha1, str) and sha1 != base64.b64encode(
            hashlib.sha1(contents, usedforsecurity=False).digest()
        ).decode("ascii"):
            issues.append(Issue(ErrorCode.VALUE, "hash is not the SHA-1 of data", f"{where}.hash"))
            continue
        title = att.get("title") if isinstance(att.get("title"), str) else ""
        out.append(
            Attachment(
                content_type=content_type,
                title=title or "bestand",
                size=len(contents),
                sha256=hashlib.sha256(contents).hexdigest(),
                data=contents,
                where=where,
            )
        )
    return tuple(out)


def _recipient(resource: JsonObject, refs: _References, issues: list[Issue]) -> str | None:
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
    found = refs.find(reference)
    if found is not None and _type_of(found) == "Organization":
        ids = _identifiers(found.resource, found.path)
        missing_at = f"{found.path}.identifier"
    elif found is None and refs.in_bundle and reference is not None:
        issues.append(_dangling("recipient", reference, f"{path}.reference"))
        return None
    elif found is None and not (reference or "").startswith("#"):
        ids = _logical_identifiers(recipient, path)
        missing_at = f"{path}.identifier"
    else:
        issues.append(
            Issue(
                ErrorCode.INVALID,
                "the recipient must be an Organization of the Bundle (an entry, or contained) "
                "or a logical reference with a URA identifier"
                if refs.in_bundle
                else "the recipient must be a contained Organization or a logical reference "
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


# ---------------------------------------------------------------- Bundles
#
# A practice system may post its Communication with the resources it refers to as a
# Bundle (FHIR R4 2.36.4.1 "Resolving references in Bundles"):
#
#   message:      entry[0] MessageHeader --focus--> the Communication entry
#   transaction,  entries with request (POST; PUT for the referenced resources);
#   batch:        the Communication entry is POSTed to Communication
#
#   Communication.subject/sender/recipient --(fullUrl | Type/id | #id)--> entries
#       --> CaseMessage.resource: the Communication, those entries made contained
#
# Strictly, a batch's entries may not depend on each other; practice systems send them
# that way all the same, and inside Wijkbrug a batch is read exactly like a transaction.

BUNDLE_TYPES = ("transaction", "batch", "message")
# R4/R4B BundleType codes: shown back to the client only when they are one of these.
_KNOWN_BUNDLE_TYPES = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
        "subscription-notification",
    }
)
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_TYPE_ID = r"([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})"
_HISTORY = r"(?:/_history/[A-Za-z0-9\-.]{1,64})?"
_RELATIVE = re.compile(f"^{_TYPE_ID}{_HISTORY}$")
_URL_TAIL = re.compile(f"/{_TYPE_ID}{_HISTORY}$")
_VERSIONED = re.compile(r"^(.+)/_history/[A-Za-z0-9\-.]{1,64}$")
_ENTRY_METHODS = frozenset({"POST", "PUT"})
# Meta that a contained resource may not carry (R4 dom-4, dom-5).
_NOT_IN_CONTAINED_META = ("versionId", "lastUpdated", "security")


@dataclass(frozen=True)
class _Entry:
    index: int
    full_url: str | None
    resource: JsonObject | None
    request: JsonObject | None
    has_response: bool

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def resource_type(self) -> str | None:
        return _str(self.resource.get("resourceType")) if self.resource is not None else None


class _BundleEntries:
    """The entries of a Bundle and how a reference finds one of them.

    An absolute reference (``urn:uuid:``, ``urn:oid:``, ``https://...``) matches an entry's
    fullUrl (a version in the URL is ignored). A relative one, ``Type/id``, matches the
    entry whose fullUrl ends in ``/Type/id`` or whose resource has that type and id; it
    resolves only when exactly one entry matches.
    """

    def __init__(self, bundle: JsonObject) -> None:
        self.entries = [
            _Entry(
                index=index,
                full_url=_str(entry.get("fullUrl")),
                resource=_obj(entry.get("resource")),
                request=_obj(entry.get("request")),
                has_response="response" in entry,
            )
            for index, entry in _items(bundle.get("entry"))
        ]
        self.repeated_urls: list[_Entry] = []
        self._by_url: dict[str, _Entry] = {}
        self._by_type_id: dict[tuple[str, str], dict[int, _Entry]] = {}
        for entry in self.entries:
            if entry.full_url is not None:
                if entry.full_url in self._by_url:
                    self.repeated_urls.append(entry)
                else:
                    self._by_url[entry.full_url] = entry
                if tail := _URL_TAIL.search(entry.full_url):
                    self._index(tail.group(1), tail.group(2), entry)
            kind = entry.resource_type
            local_id = _str(entry.resource.get("id")) if entry.resource is not None else None
            if kind is not None and local_id is not None:
                self._index(kind, local_id, entry)

    def _index(self, kind: str, local_id: str, entry: _Entry) -> None:
        self._by_type_id.setdefault((kind, local_id), {})[entry.index] = entry

    def lookup(self, reference: str) -> _Entry | None:
        """The one entry a reference (not ``#id``) points to, or None."""
        exact = self._by_url.get(reference)
        if exact is not None:
            return exact
        if _ABSOLUTE.match(reference):
            versioned = _VERSIONED.match(reference)  # the same URL without /_history/v
            return self._by_url.get(versioned.group(1)) if versioned else None
        relative = _RELATIVE.match(reference)
        if relative is None:
            return None
        found = self._by_type_id.get((relative.group(1), relative.group(2)), {})
        return next(iter(found.values())) if len(found) == 1 else None

    def resolve(self, reference: str) -> Target | None:
        """A :data:`Resolver` over the entries."""
        entry = self.lookup(reference)
        if entry is None or entry.resource is None:
            return None
        return Target(entry.resource, f"{entry.path}.resource", entry=True)


def read_bundle(
    bundle: JsonObject, prior: list[Issue] | None = None, *, json_checked: bool = False
) -> CaseMessage:
    """A :class:`CaseMessage` from a ``transaction``, ``batch`` or ``message`` Bundle.

    The Bundle carries exactly one Communication; its references to other entries (by
    fullUrl, ``Type/id`` or, inside the Communication, ``#id``) are resolved, and
    ``CaseMessage.resource`` is that Communication with the entries it refers to made
    contained: a self-contained R4 resource, made of the Bundle's own resources (the
    Bundle is handed over). Issues point into the Bundle
    (``Bundle.entry[2].resource.subject.reference``). ``json_checked`` as for
    :func:`read_communication`.
    """
    kind = _bundle_type(bundle)
    structural = list(prior or []) + fhirmodel.check(bundle, json_rules=not json_checked)
    entries = _BundleEntries(bundle)
    issues = _entry_rules(entries, kind)
    found_one = _the_communication(entries, issues)
    if found_one is None:
        raise WijkbrugError.from_issues(_merge(structural, issues))
    communication, comm_resource = found_one
    if kind == "message":
        _message_header(entries, communication, issues)
    msg, found = _apply_rules(comm_resource, entries.resolve)
    issues.extend(_relocated(issue, f"{communication.path}.resource") for issue in found)
    problems = _merge(structural, issues)
    if problems or msg is None:
        raise WijkbrugError.from_issues(problems or [Issue(ErrorCode.INVALID, "invalid")])
    # Valid entries make a valid self-contained Communication: it is not validated again
    # (that would double the cost of a Bundle). test_fhir_r4_bundles holds it to that,
    # for every Bundle it sends and for junk put anywhere in one.
    return replace(msg, resource=_self_contained(communication, comm_resource, entries))


def _bundle_type(bundle: JsonObject) -> str:
    kind = bundle.get("type")
    if isinstance(kind, str) and kind in BUNDLE_TYPES:
        return kind
    accepted = ", ".join(BUNDLE_TYPES)
    if kind is None:
        issue = Issue(
            ErrorCode.REQUIRED, f"the Bundle's type is required (one of {accepted})", "Bundle.type"
        )
    else:
        known = isinstance(kind, str) and kind in _KNOWN_BUNDLE_TYPES
        shown = f"a {kind} Bundle" if known else "a Bundle of this type"
        issue = Issue(
            ErrorCode.INVALID,
            f"{shown} is not accepted: post a {accepted} Bundle that carries one "
            "Communication, or the Communication alone",
            "Bundle.type",
        )
    raise WijkbrugError.from_issues([issue])


def _entry_rules(entries: _BundleEntries, kind: str) -> list[Issue]:
    """The rules for the entries themselves (R4 bdl-3, bdl-4, bdl-7 and Wijkbrug's own)."""
    issues: list[Issue] = []
    for entry in entries.repeated_urls:
        issues.append(
            Issue(
                ErrorCode.INVALID, "fullUrl repeats that of another entry", f"{entry.path}.fullUrl"
            )
        )
    for entry in entries.entries:
        if entry.resource is None:
            issues.append(
                Issue(
                    ErrorCode.REQUIRED, "each entry must carry a resource", f"{entry.path}.resource"
                )
            )
        if entry.has_response:
            issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "entry.response belongs in a response Bundle",
                    f"{entry.path}.response",
                )
            )
        if kind == "message":
            if entry.request is not None:
                issues.append(
                    Issue(
                        ErrorCode.INVALID,
                        "the entries of a message Bundle have no request",
                        f"{entry.path}.request",
                    )
                )
        else:
            issues.extend(_request_rules(entry, kind))
    return issues


def _request_rules(entry: _Entry, kind: str) -> list[Issue]:
    request, path = entry.request, f"{entry.path}.request"
    if request is None:
        message = f"each entry of a {kind} Bundle needs a request (method and url)"
        return [Issue(ErrorCode.REQUIRED, message, path)]
    method = request.get("method")
    if not isinstance(method, str):
        return []  # missing or malformed: the structural check says so
    if entry.resource_type == "Communication":
        if method != "POST":
            return [
                Issue(ErrorCode.INVALID, "the Communication is created with POST", f"{path}.method")
            ]
        url = (_str(request.get("url")) or "").partition("?")[0].rstrip("/")
        if url != "Communication" and not url.endswith("/Communication"):
            message = "the Communication is POSTed to Communication"
            return [Issue(ErrorCode.INVALID, message, f"{path}.url")]
    elif method not in _ENTRY_METHODS:
        message = (
            "besides the Communication a Bundle carries only the resources it refers to "
            "(request method POST or PUT)"
        )
        return [Issue(ErrorCode.INVALID, message, f"{path}.method")]
    return []


def _the_communication(
    entries: _BundleEntries, issues: list[Issue]
) -> tuple[_Entry, JsonObject] | None:
    """The one Communication entry and its resource (exactly one, else an issue)."""
    found = [
        (e, e.resource)
        for e in entries.entries
        if e.resource is not None and e.resource_type == "Communication"
    ]
    if not found:
        message = "the Bundle carries no Communication; exactly one is required"
        issues.append(Issue(ErrorCode.REQUIRED, message, "Bundle.entry"))
        return None
    for extra, _ in found[1:]:
        issues.append(
            Issue(
                ErrorCode.INVALID,
                "the Bundle carries more than one Communication; post one per Bundle",
                f"{extra.path}.resource",
            )
        )
    return found[0] if len(found) == 1 else None


def _message_header(entries: _BundleEntries, communication: _Entry, issues: list[Issue]) -> None:
    """A message Bundle starts with a MessageHeader whose focus is the Communication."""
    first = entries.entries[0]  # there is at least the Communication
    if first.resource_type != "MessageHeader" or first.resource is None:
        message = "a message Bundle starts with a MessageHeader entry"
        issues.append(Issue(ErrorCode.INVALID, message, f"{first.path}.resource"))
        return
    path = f"{first.path}.resource.focus"
    rule = "the MessageHeader's focus must refer to the Communication entry (by its fullUrl)"
    focus = list(_items(first.resource.get("focus")))
    if not focus:
        issues.append(Issue(ErrorCode.REQUIRED, rule, path))
        return
    references = [(index, _str(item.get("reference"))) for index, item in focus]
    if any(ref and entries.lookup(ref) is communication for _, ref in references):
        return
    index, reference = references[0]
    where = f"{path}[{index}]" + (".reference" if reference else "")
    issues.append(Issue(ErrorCode.INVALID, rule, where))


def _relocated(issue: Issue, resource_path: str) -> Issue:
    """An issue about the Communication, placed at the Communication's entry."""
    where = issue.expression or ""
    if where == "Communication" or where.startswith(("Communication.", "Communication[")):
        return replace(issue, expression=resource_path + where.removeprefix("Communication"))
    return issue


def _self_contained(
    communication: _Entry, resource: JsonObject, entries: _BundleEntries
) -> JsonObject:
    """The Communication with the entries it refers to (directly or through them) contained.

    They are contained in the order of the Bundle, and references to them become ``#id``;
    a contained resource loses what a contained resource may not have (narrative, version
    meta, resources of its own, which are lifted up beside it). References that resolve
    to no entry, or to a MessageHeader, are left as they are.

    The result is made of the Bundle's own resources, with their references rewritten in
    place (no copy: ``read_bundle`` is handed the Bundle, and nothing reads it after).
    Each resource that goes in is walked once, for its references.
    """

    def usable(reference: str) -> tuple[_Entry, JsonObject] | None:
        entry = entries.lookup(reference)
        if entry is None or entry.resource is None or entry.resource_type == "MessageHeader":
            return None
        return entry, entry.resource

    out = resource
    holders = _reference_holders(out)
    wanted: dict[int, tuple[JsonObject, list[JsonObject]]] = {}
    pending = [holders]
    while pending:
        for holder in pending.pop():
            found = usable(holder["reference"])
            if found is None or found[0] is communication or found[0].index in wanted:
                continue
            wanted[found[0].index] = (found[1], _reference_holders(found[1]))
            pending.append(wanted[found[0].index][1])

    contained_ids = (_str(item.get("id")) for _, item in _items(resource.get("contained")))
    taken = {local for local in contained_ids if local}
    local_ids = {index: _fresh_id(wanted[index][0], taken) for index in sorted(wanted)}

    def local_reference(reference: str) -> str | None:
        found = usable(reference)
        if found is None:
            return None
        return "#" if found[0] is communication else "#" + local_ids[found[0].index]

    _rewrite(holders, local_reference)
    contained = [item for _, item in _items(out.get("contained"))]
    for index in sorted(wanted):
        copied, copied_holders = wanted[index]
        contained += _as_contained(copied, copied_holders, local_ids[index], taken, local_reference)
    if not contained:
        return out
    # ``contained`` sits after the resource's metadata, where FHIR puts it.
    head = ("resourceType", "id", "meta", "implicitRules", "language", "text")
    ordered: JsonObject = {k: v for k, v in out.items() if k in head}
    ordered["contained"] = contained
    ordered.update((k, v) for k, v in out.items() if k not in head and k != "contained")
    return ordered


def _as_contained(
    resource: JsonObject,
    holders: list[JsonObject],
    local_id: str,
    taken: set[str],
    bundle_reference: Callable[[str], str | None],
) -> list[JsonObject]:
    """An entry's resource (with the ``holders`` of its references) as a contained
    resource, and its own contained lifted beside it.

    Its ``#id`` references follow its contained resources to their new ids; its other
    references are rewritten by ``bundle_reference`` (to the entries contained beside it).
    """
    renamed = {"": local_id}  # '#' alone: the resource that contained them
    inner: list[tuple[JsonObject, str]] = []
    for _, item in _items(resource.get("contained")):
        new_id = _fresh_id(item, taken)
        if old := _str(item.get("id")):
            renamed.setdefault(old, new_id)
        inner.append((item, new_id))

    def local_reference(reference: str) -> str | None:
        new = renamed.get(reference[1:]) if reference.startswith("#") else None
        return "#" + new if new is not None else bundle_reference(reference)

    _rewrite(holders, local_reference)
    return [
        _without_container_parts(each, each_id) for each, each_id in [(resource, local_id), *inner]
    ]


def _without_container_parts(resource: JsonObject, local_id: str) -> JsonObject:
    """The resource with a local id; no narrative, resources or version meta (R4 dom-1,
    -2, -4, -5). It shares its parts with ``resource``."""
    out: JsonObject = {"resourceType": resource.get("resourceType"), "id": local_id}
    meta = {
        k: v
        for k, v in (_obj(resource.get("meta")) or {}).items()
        if k not in _NOT_IN_CONTAINED_META
    }
    if meta:
        out["meta"] = meta
    out.update(
        (k, v)
        for k, v in resource.items()
        if k not in ("resourceType", "id", "meta", "text", "contained")
    )
    return out


def _fresh_id(resource: JsonObject, taken: set[str]) -> str:
    """A readable local id (``patient``, ``practitionerrole-2``) not used yet."""
    kind = resource.get("resourceType")
    base = (
        kind.lower() if isinstance(kind, str) and fhirmodel.is_resource_type(kind) else "resource"
    )
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}-{number}"
    taken.add(candidate)
    return candidate


def _rewrite(holders: list[JsonObject], new_reference: Callable[[str], str | None]) -> None:
    """Every ``Reference.reference`` of ``holders`` for which ``new_reference`` has a new
    value, replaced in place."""
    for holder in holders:
        if new := new_reference(holder["reference"]):
            holder["reference"] = new


def _reference_holders(node: Any, found: list[JsonObject] | None = None) -> list[JsonObject]:
    """Every object in a resource (its contained resources included) whose ``reference``
    is a string, in document order."""
    out = [] if found is None else found
    if isinstance(node, list):
        for item in node:
            _reference_holders(item, out)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.append(node)
            elif value.__class__ is dict or value.__class__ is list:
                _reference_holders(value, out)
    return out


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
    original = fhirmodel.json_copy(msg.resource)
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


def render_reply(reply: Reply, *, last_updated: datetime, files_base: str = "") -> JsonObject:
    """A nurse's answer as an R4 Communication for the practice's system. Its files are
    ``contentAttachment`` payloads linking to ``{files_base}/Binary/{id}``."""
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
    for att in reply.attachments:
        attachment = {"contentType": att.content_type, "url": f"{files_base}/Binary/{att.id}"}
        out["payload"].append(
            {"contentAttachment": {**attachment, "size": att.size, "title": att.title}}
        )
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
