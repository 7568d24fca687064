"""The ``fhir-stu3`` dialect: an STU3 (3.0.2) Communication in JSON or XML, zib2017 style.

    body + Content-Type --load--> STU3 FHIR JSON --fhirmodel.check_stu3()--> structural issues
                                      |
                     STU3 rules (status, priority extension, role extension)
                                      |
                                  to_r4(): the R4 Communication, the canonical form
                                      |
            fhir_r4.read_communication(): care type, Patient (BSN, postcode), sender, ...
                                      v
            CaseMessage (resource = R4 JSON), or WijkbrugError carrying every issue at once,
            each with a FHIRPath into the STU3 message the client sent

    Reply --fhir_r4.render_reply()--> R4 Communication --from_r4()--> STU3 Communication

The business rules (BSN 11-test, postcode, AGB, URA, care type) are those of the R4
dialect, run on the mapped resource: one rule book for every FHIR sender. The mapping keeps
the positions of the elements those rules read, so an issue's FHIRPath points into the
STU3 input; the few renamed elements are translated back.

STU3 -> R4 (``to_r4``; ``from_r4`` is the inverse):

==========================================  ================================================
STU3 Communication                          R4 Communication
==========================================  ================================================
extension ``…Communication.priority``       ``priority`` (STU3 has no Communication.priority;
  (``…/fhir/4.0/…``, valueCode)             the HL7 cross-version extension is how an STU3
                                            system says it; absent = routine)
extension ``…Communication.inResponseTo``   ``inResponseTo``
extension ``…Communication.topic``          ``topic`` (R4's CodeableConcept)
``status`` suspended / aborted              ``status`` on-hold / stopped (others the same)
``notDone`` = true                          ``status`` not-done (back: aborted + notDone)
``notDoneReason``                           ``statusReason``
``definition`` (Reference)                  ``instantiatesCanonical`` (its reference); one
                                            without a reference in extension
                                            ``…/3.0/…Communication.definition``
``topic`` (Reference)                       ``about``
``context`` Encounter / EpisodeOfCare       ``encounter`` / extension ``…/3.0/…context``
``sender`` Practitioner + extension         ``sender`` -> the contained PractitionerRole
  ``practitionerrole-reference`` (Nictiz)   (STU3 cannot refer to a PractitionerRole here)
identifier systems given as OIDs            the NamingSystem URIs (``identifiers``)
HumanName with zib2017 BR/CL/IN given names ``text`` added when absent: one kind of given
  and no ``text``                           name + family ("Johan Helleman", not
                                            "Johan J. Helleman")
``meta.profile``                            left out: a profile belongs to one FHIR version
contained Patient ``animal``                left out (no R4 element)
contained RelatedPerson ``relationship``    ``relationship`` (a list in R4)
other contained resources                   kept when valid R4 as they are; otherwise left
                                            out, and references to them keep only display
(R4 only, in ``from_r4``)                   ``Reference.type`` left out
==========================================  ================================================

Replies (``render_reply``) answer a message with both the cross-version extension
``inResponseTo`` (exact, and what ``to_r4`` maps back) and ``topic`` (STU3's own element
for "the resources this communication is about", read by systems that ignore extensions).
Diagnostics say what is wrong and where, never what was sent: it is patient data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from adapters import fhir_r4
from adapters.fhir_media import FHIR_JSON as FHIR_JSON
from adapters.fhir_media import FHIR_XML as FHIR_XML
from adapters.fhir_media import FhirMedia
from bridge import fhirmodel
from bridge.canonical import CaseMessage, Priority, Reply
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import OID_TO_SYSTEM

NAME = "fhir-stu3"
# STU3 introduced the fhir+ types; systems of that era still send the DSTU2 spellings.
_JSON_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")
_XML_TYPES = (FHIR_XML, "application/xml", "application/xml+fhir")
MEDIA_TYPES = _JSON_TYPES + _XML_TYPES
FHIR_VERSIONS = ("3.0", "3.0.1", "3.0.2")

JsonObject = dict[str, Any]

# R4 elements carried in STU3 by the HL7 cross-version extensions, and STU3 elements that
# have no R4 element carried the other way.
R4_EXTENSION = "http://hl7.org/fhir/4.0/StructureDefinition/extension-Communication."
STU3_EXTENSION = "http://hl7.org/fhir/3.0/StructureDefinition/extension-Communication."
PRIORITY_EXTENSION = R4_EXTENSION + "priority"
IN_RESPONSE_TO_EXTENSION = R4_EXTENSION + "inResponseTo"
TOPIC_EXTENSION = R4_EXTENSION + "topic"
DEFINITION_EXTENSION = STU3_EXTENSION + "definition"
CONTEXT_EXTENSION = STU3_EXTENSION + "context"
# Nictiz STU3: the PractitionerRole of a practitioner, on a Reference(Practitioner).
ROLE_EXTENSION = "http://nictiz.nl/fhir/StructureDefinition/practitionerrole-reference"

# STU3 EventStatus (Communication.status is bound to it, required).
STATUSES = frozenset(
    {
        "preparation",
        "in-progress",
        "suspended",
        "aborted",
        "completed",
        "entered-in-error",
        "unknown",
    }
)
_STATUS_TO_R4 = {"suspended": "on-hold", "aborted": "stopped"}
_STATUS_FROM_R4 = {"on-hold": "suspended", "stopped": "aborted", "not-done": "aborted"}
_PRIORITIES = ", ".join(p.value for p in Priority)

# What an R4 sender may write that STU3 says differently, for a useful diagnostic.
_R4_ONLY = {
    "priority": f"send urgency as extension {PRIORITY_EXTENSION} (valueCode)",
    "inResponseTo": f"use extension {IN_RESPONSE_TO_EXTENSION} (valueReference)",
    "about": "STU3 calls it topic",
    "encounter": "STU3 calls it context",
    "statusReason": "STU3 calls it notDoneReason",
    "instantiatesCanonical": "STU3 calls it definition",
    "instantiatesUri": "STU3 calls it definition",
}

# ---------------------------------------------------------------- media types


def media_format(content_type: str) -> str:
    """``"json"`` or ``"xml"`` for a Content-Type header; ``WijkbrugError`` if unsupported."""
    return _MEDIA.media_format(content_type)


def response_media_type(accept: str | None, format_param: str | None = None) -> str:
    """The media type to answer in: ``_format`` first, then ``Accept``; JSON by default."""
    return _MEDIA.response_media_type(accept, format_param)


_MEDIA = FhirMedia(
    _JSON_TYPES,
    _XML_TYPES,
    FHIR_VERSIONS,
    "this endpoint speaks FHIR 3.0 (STU3); R4 senders use /fhir",
)


def to_xml(resource: JsonObject) -> bytes:
    """The STU3 FHIR XML form of a resource this module rendered."""
    return fhirmodel.dump_xml_stu3(resource)


# ---------------------------------------------------------------- parsing


def parse_communication(body: bytes, content_type: str) -> CaseMessage:
    """A GP's STU3 Communication (JSON or XML) as a :class:`CaseMessage`.

    ``CaseMessage.resource`` is the R4 form (see :func:`to_r4`). Raises ``WijkbrugError``
    with every problem found, each with a FHIRPath into the STU3 message.
    """
    systems: list[JsonObject] | None = None
    if media_format(content_type) == "xml":
        resource, issues = fhirmodel.load_xml_stu3(body)
        from_xml = True
    else:
        (resource, systems), issues, from_xml = fhirmodel.load_json_checked_stu3(body), [], False
    _require_communication(resource)
    if systems is None:
        issues += fhirmodel.check_json_stu3(resource)
    structural = _version_hints(resource, issues, from_xml)
    return read_communication(resource, structural, systems)


def read_communication(
    resource: JsonObject, structural: list[Issue], systems: list[JsonObject] | None = None
) -> CaseMessage:
    """A :class:`CaseMessage` from an STU3 Communication in FHIR JSON.

    ``structural`` are the problems :func:`fhirmodel.check_stu3` (and the XML loader)
    found; the business rules add theirs, and all are raised together. The R4 form is
    made of ``resource`` itself (see :func:`to_r4` for a mapping that leaves it as it is).
    ``systems``: every object in it with a ``system``, when the loader has found them.
    """
    mapped = _Mapping()
    r4 = mapped.communication(resource, systems)
    found: list[Issue] = list(mapped.issues)
    msg: CaseMessage | None = None
    try:
        # The STU3 JSON rules have passed; the R4 model checks what the mapping made.
        msg = fhir_r4.read_communication(r4, json_checked=True)
    except WijkbrugError as error:
        found.extend(mapped.stu3_issue(issue) for issue in error.all_issues())
    problems = _merge(structural, found)
    if problems or msg is None:
        raise WijkbrugError.from_issues(problems or [Issue(ErrorCode.INVALID, "invalid")])
    return msg


def _require_communication(resource: JsonObject) -> None:
    sent = resource.get("resourceType")
    if sent == "Communication":
        return
    code = ErrorCode.INVALID
    if sent is None:
        message, code = "resourceType is missing; expected a Communication", ErrorCode.REQUIRED
    elif sent == "Bundle":
        message = (
            "a Bundle is not accepted: post the Communication with its Patient and sender contained"
        )
    elif isinstance(sent, str) and fhirmodel.is_resource_type_stu3(sent):
        message = f"expected a Communication, got a {sent}"
    elif isinstance(sent, str) and fhirmodel.is_resource_type(sent):
        message = f"{sent} is not an STU3 resource type (it is FHIR R4: post R4 to /fhir)"
    else:
        message = "expected a Communication, got an unknown resource type"
    raise WijkbrugError.from_issues([Issue(code, message, "Communication.resourceType")])


def _version_hints(resource: JsonObject, issues: list[Issue], from_xml: bool) -> list[Issue]:
    """Structural issues, with a pointer to /fhir where the input looks like FHIR R4."""
    unknown = [i for i in issues if i.diagnostics == "unknown element"]
    # JSON that R4 accepts whole was meant for the R4 endpoint. (The XML loader has left
    # the unknown elements out, so the same test would say nothing there.)
    looks_r4 = bool(unknown) and not from_xml and not fhirmodel.check(resource)
    out = []
    for issue in issues:
        element = (issue.expression or "").removeprefix("Communication.")
        if issue.diagnostics != "unknown element":
            out.append(issue)
        elif element in _R4_ONLY:
            text = f"{element} is FHIR R4, not STU3: {_R4_ONLY[element]}, or post R4 to /fhir"
            out.append(replace(issue, diagnostics=text))
        elif looks_r4:
            text = "unknown element in FHIR STU3; this resource is FHIR R4: post it to /fhir"
            out.append(replace(issue, diagnostics=text))
        else:
            out.append(issue)
    return out


def _merge(structural: list[Issue], business: list[Issue]) -> list[Issue]:
    """All issues, one per place: a rule broken under a malformed element is noise."""
    places = [i.expression for i in structural if i.expression]
    seen = set(places)
    out = list(structural)
    for issue in business:
        where = issue.expression or ""
        if where in seen or any(where.startswith((p + ".", p + "[")) for p in places):
            continue
        seen.add(where)
        out.append(issue)
    return out


# ------------------------------------------------- small readers of untrusted JSON


def _obj(value: Any) -> JsonObject | None:
    return value if isinstance(value, dict) else None


def _str(value: Any) -> str | None:
    """A non-blank string, stripped; else None."""
    return (value.strip() or None) if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _extensions(holder: JsonObject, url: str) -> list[tuple[int, JsonObject]]:
    """The extensions with ``url`` of an element, with their index."""
    return [
        (index, ext)
        for index, ext in enumerate(_list(holder.get("extension")))
        if isinstance(ext, dict) and ext.get("url") == url
    ]


def _without_profiles(meta: Any) -> Any:
    """``meta`` less its profile claims: a profile is bound to one FHIR version."""
    if not isinstance(meta, dict) or "profile" not in meta:
        return meta
    rest = {k: v for k, v in meta.items() if k not in ("profile", "_profile")}
    return rest or None


def _copy(
    source: JsonObject,
    target: JsonObject,
    *names: str,
    copy: Callable[[Any], Any] | None = fhirmodel.json_copy,
) -> None:
    """Copy elements both versions share (with their ``_`` twins, and without profiles);
    ``copy=None`` moves them over as they are."""
    for name in names:
        for key in (name, f"_{name}"):
            if key in source:
                target[key] = source[key] if copy is None else copy(source[key])
        if name == "meta" and "meta" in target:
            meta = _without_profiles(target["meta"])
            if meta is None:
                del target["meta"]
            else:
                target["meta"] = meta


def _walk(node: Any, visit: Callable[[JsonObject], None], depth: int = 0) -> None:
    """Call ``visit`` on every JSON object in ``node`` (bounded: the input is untrusted)."""
    if depth > fhirmodel.MAX_DEPTH:
        return
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit, depth + 1)
    elif isinstance(node, list):
        for item in node:
            _walk(item, visit, depth + 1)


def _systems_to_r4(holders: list[JsonObject]) -> None:
    """OID identifier systems (zib2017 senders) as the NamingSystem URIs R4 nl-core uses,
    in place (a Coding's system, next to its code, stays as it is)."""
    for holder in holders:
        system = holder["system"]
        if isinstance(system, str) and system in OID_TO_SYSTEM and "code" not in holder:
            holder["system"] = OID_TO_SYSTEM[system]


def _with_system(node: Any, found: list[JsonObject] | None = None, depth: int = 0) -> list[Any]:
    """Every JSON object in ``node`` with a ``system`` property. Deeper than any resource
    can be (the STU3 check rejects it) the walk stops, where a copy would have recursed on."""
    out: list[Any] = [] if found is None else found
    if depth > fhirmodel.MAX_DEPTH:
        return out
    if isinstance(node, dict):
        if "system" in node:
            out.append(node)
        for value in node.values():
            if isinstance(value, dict | list):
                _with_system(value, out, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _with_system(item, out, depth + 1)
    return out


def _json_tree(value: Any) -> Any:
    """A copy of JSON data that shares no object with it (the mapping works in place)."""
    if isinstance(value, dict):
        return {key: _json_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_tree(item) for item in value]
    return value


def _drop_reference_types(node: JsonObject) -> None:
    """R4's ``Reference.type`` is not in STU3 (an Address's ``type`` holds no reference)."""

    def visit(obj: JsonObject) -> None:
        if isinstance(obj.get("type"), str) and (
            "reference" in obj or "display" in obj or isinstance(obj.get("identifier"), dict)
        ):
            obj.pop("type")
            obj.pop("_type", None)

    _walk(node, visit)


def _forget_references(node: Any, ids: set[str], why: str) -> None:
    """References to contained resources that were left out keep their display only."""
    if not ids:
        return

    def visit(obj: JsonObject) -> None:
        reference = obj.get("reference")
        if isinstance(reference, str) and reference.startswith("#") and reference[1:] in ids:
            del obj["reference"]
            obj.pop("_reference", None)
            obj.setdefault("display", why)

    _walk(node, visit)


def _local_id(reference: Any) -> str | None:
    """The id of the contained resource a Reference points to (``#id``), if it does."""
    ref = _str(reference.get("reference")) if isinstance(reference, dict) else None
    return ref[1:] if ref and ref.startswith("#") else None


# ---------------------------------------------------------------- STU3 -> R4


@dataclass
class _Mapping:
    """One STU3 -> R4 mapping, with what it learnt on the way (issues, moved indices)."""

    issues: list[Issue] = field(default_factory=list)
    # Where an R4 element came from in the STU3 input, for the paths of issues found on
    # the R4 form ("Communication.about" -> "Communication.topic", moved indices, ...).
    paths: dict[str, str] = field(default_factory=dict)
    left_out: set[str] = field(default_factory=set)  # ids of contained resources

    def communication(
        self, source: JsonObject, systems: list[JsonObject] | None = None
    ) -> JsonObject:
        """The R4 Communication, its elements in R4 order, made of ``source`` itself: its
        parts move over as they are, and are changed in place where R4 differs (no copy:
        the caller hands ``source`` over). ``systems``: the objects in it with a
        ``system``, if known (else they are looked for)."""
        _systems_to_r4(_with_system(source) if systems is None else systems)
        out: JsonObject = {"resourceType": "Communication"}
        _copy(source, out, "id", "meta", "implicitRules", "language", "text", copy=None)
        self._contained(source, out)
        extensions = self._extensions(source, out)
        _copy(source, out, "modifierExtension", "identifier", copy=None)
        self._definition(source, out, extensions)
        _copy(source, out, "basedOn", "partOf", copy=None)
        self._carried(source, out)
        self._status(source, out)
        self._rename(source, out, "notDoneReason", "statusReason")
        _copy(source, out, "category", copy=None)
        self._priority(source, out)
        _copy(source, out, "medium", "subject", copy=None)
        self._rename(source, out, "topic", "about")
        self._context(source, out, extensions)
        _copy(source, out, "sent", "received", "recipient", copy=None)
        self._sender(source, out)
        _copy(source, out, "reasonCode", "reasonReference", "payload", "note", copy=None)
        if out.get("extension") == []:
            del out["extension"]
        _forget_references(out, self.left_out, "(not carried over from FHIR STU3)")
        return out

    # -- the parts

    def _moved(self, r4_path: str, stu3_path: str) -> None:
        self.paths[f"Communication.{r4_path}"] = f"Communication.{stu3_path}"

    def _appended(self, extensions: list[Any], url: str, value: Any, stu3_path: str) -> None:
        """An STU3 element with no R4 element, carried as an R3 cross-version extension."""
        at = f"extension[{len(extensions)}]"
        self._moved(at, stu3_path)
        self._moved(f"{at}.valueReference", stu3_path)
        extensions.append({"url": url, "valueReference": value})

    def _rename(self, source: JsonObject, out: JsonObject, stu3_name: str, r4_name: str) -> None:
        if stu3_name in source:
            out[r4_name] = source[stu3_name]
            self._moved(r4_name, stu3_name)

    def _contained(self, source: JsonObject, out: JsonObject) -> None:
        value = source.get("contained")
        if not isinstance(value, list):
            # Malformed: the R4 check says so at that path.
            _copy(source, out, "contained", copy=None)
            return
        kept: list[Any] = []
        for index, item in enumerate(value):
            # Not an object: kept as it is, for the R4 check to report at the same place.
            mapped = _contained_to_r4(item) if isinstance(item, dict) else item
            if mapped is None and isinstance(item, dict):
                self.left_out.add(str(item.get("id")))
                continue
            self._moved(f"contained[{len(kept)}]", f"contained[{index}]")
            kept.append(mapped)
        out["contained"] = kept

    def _extensions(self, source: JsonObject, out: JsonObject) -> list[Any]:
        """The extensions that stay extensions (more may be added for STU3-only elements)."""
        value = source.get("extension")
        if not isinstance(value, list):
            _copy(source, out, "extension", copy=None)
            return []
        kept: list[Any] = []
        carried = (PRIORITY_EXTENSION, IN_RESPONSE_TO_EXTENSION, TOPIC_EXTENSION)
        for index, ext in enumerate(value):
            if isinstance(ext, dict) and ext.get("url") in carried:
                continue  # mapped to its R4 element
            self._moved(f"extension[{len(kept)}]", f"extension[{index}]")
            kept.append(ext)
        out["extension"] = kept
        return kept

    def _definition(self, source: JsonObject, out: JsonObject, extensions: list[Any]) -> None:
        canonical: list[str] = []
        for index, item in enumerate(_list(source.get("definition"))):
            if not isinstance(item, dict):
                continue  # malformed: the STU3 check has said so
            reference = _str(item.get("reference"))
            if reference is not None:
                self._moved(f"instantiatesCanonical[{len(canonical)}]", f"definition[{index}]")
                canonical.append(reference)
            else:
                self._appended(extensions, DEFINITION_EXTENSION, item, f"definition[{index}]")
        if canonical:
            out["instantiatesCanonical"] = canonical

    def _carried(self, source: JsonObject, out: JsonObject) -> None:
        """R4 elements an STU3 sender wrote as cross-version extensions (not priority)."""
        answers: list[Any] = []
        for index, ext in _extensions(source, IN_RESPONSE_TO_EXTENSION):
            if isinstance(ext.get("valueReference"), dict):
                self._moved(f"inResponseTo[{len(answers)}]", f"extension[{index}].valueReference")
                answers.append(ext["valueReference"])
        if answers:
            out["inResponseTo"] = answers
        for index, ext in _extensions(source, TOPIC_EXTENSION):
            if isinstance(ext.get("valueCodeableConcept"), dict):
                self._moved("topic", f"extension[{index}].valueCodeableConcept")
                out["topic"] = ext["valueCodeableConcept"]
                break  # R4 has one topic

    def _status(self, source: JsonObject, out: JsonObject) -> None:
        status = source.get("status")
        if isinstance(status, str) and status not in STATUSES:
            self.issues.append(
                Issue(
                    ErrorCode.VALUE,
                    f"unknown status; allowed: {', '.join(sorted(STATUSES))}",
                    "Communication.status",
                )
            )
        if source.get("notDone") is True:
            out["status"] = "not-done"
        elif isinstance(status, str):
            out["status"] = _STATUS_TO_R4.get(status, status)
        elif status is not None:
            out["status"] = status
        if "_status" in source:
            out["_status"] = source["_status"]

    def _priority(self, source: JsonObject, out: JsonObject) -> None:
        found = _extensions(source, PRIORITY_EXTENSION)
        for index, _ in found[1:]:
            self.issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "the priority extension may occur only once",
                    f"Communication.extension[{index}]",
                )
            )
        if not found:
            return
        index, ext = found[0]
        code = ext.get("valueCode")
        try:
            out["priority"] = Priority(code).value
            self._moved("priority", f"extension[{index}].valueCode")
        except (ValueError, TypeError):
            where = f"Communication.extension[{index}]"
            self.issues.append(
                Issue(
                    ErrorCode.VALUE,
                    f"unknown priority; allowed: {_PRIORITIES}",
                    f"{where}.valueCode",
                )
                if "valueCode" in ext
                else Issue(
                    ErrorCode.REQUIRED,
                    f"the priority extension needs a valueCode ({_PRIORITIES})",
                    where,
                )
            )

    def _context(self, source: JsonObject, out: JsonObject, extensions: list[Any]) -> None:
        context = source.get("context")
        if not isinstance(context, dict):
            return  # absent, or malformed (the STU3 check says so)
        if self._is_encounter(source, context):
            self._rename(source, out, "context", "encounter")
        else:  # an EpisodeOfCare, or a logical reference of no known type
            self._appended(extensions, CONTEXT_EXTENSION, context, "context")

    def _is_encounter(self, source: JsonObject, reference: JsonObject) -> bool:
        ref = _str(reference.get("reference")) or ""
        local = _local_id(reference)
        if local is not None:
            for item in _list(source.get("contained")):
                if isinstance(item, dict) and item.get("id") == local:
                    return bool(item.get("resourceType") == "Encounter")
            return False
        return re.search(r"(^|/)Encounter/[^/]+(/_history/[^/]+)?$", ref) is not None

    def _sender(self, source: JsonObject, out: JsonObject) -> None:
        sender = source.get("sender")
        if sender is None:
            return
        out["sender"] = sender
        if not isinstance(sender, dict):
            return
        roles = _extensions(sender, ROLE_EXTENSION)
        if not roles:
            return
        index, ext = roles[0]
        where = f"Communication.sender.extension[{index}]"
        value = _obj(ext.get("valueReference"))
        local = _local_id(value)
        if value is None or local is None:
            return  # a role elsewhere: the practitioner reference still says who sent it
        role = self._contained_resource(out, local)
        if role is None or role.get("resourceType") != "PractitionerRole":
            self.issues.append(
                Issue(
                    ErrorCode.INVALID,
                    "the practitionerrole-reference must refer to a contained PractitionerRole",
                    f"{where}.valueReference.reference",
                )
            )
            return
        # R4 refers to the role itself; the role names the practitioner (taken from the
        # sender reference when the role leaves it out).
        if "practitioner" not in role and _str(sender.get("reference")):
            role["practitioner"] = {
                k: v for k, v in sender.items() if k in ("reference", "display")
            }
        self._moved("sender.reference", f"sender.extension[{index}].valueReference.reference")
        reference: JsonObject = {"reference": f"#{local}"}
        display = _str(sender.get("display")) or _str(value.get("display"))
        if display:
            reference["display"] = display
        others = [e for i, e in enumerate(_list(sender.get("extension"))) if i != index]
        if others:
            reference["extension"] = others
        out["sender"] = reference

    def _contained_resource(self, out: JsonObject, local: str) -> JsonObject | None:
        for item in _list(out.get("contained")):
            if isinstance(item, dict) and item.get("id") == local:
                return item
        return None

    # -- issue paths back into the STU3 message

    def stu3_issue(self, issue: Issue) -> Issue:
        """An issue found on the R4 form, with its path into the STU3 input."""
        path = issue.expression
        if not path:
            return issue
        # The longest recorded prefix that ends at an element boundary decides.
        cut = len(path)
        while cut > 0:
            if path[:cut] in self.paths:
                return replace(issue, expression=self.paths[path[:cut]] + path[cut:])
            cut = max(path.rfind(".", 0, cut), path.rfind("[", 0, cut))
        return issue


def _contained_to_r4(item: JsonObject) -> JsonObject | None:
    """A contained STU3 resource in R4; ``None`` if it cannot be carried over."""
    out: JsonObject = item
    _copy(item, out, "meta", copy=None)  # drops the profile claims
    kind = out.get("resourceType")
    if kind in ("Patient", "Practitioner", "RelatedPerson"):
        for name in _list(out.get("name")):
            _add_name_text(name)
    if kind == "Patient":
        out.pop("animal", None)  # no R4 element (pets are not patients in R4 core)
    elif kind == "RelatedPerson" and isinstance(out.get("relationship"), dict):
        out["relationship"] = [out["relationship"]]
    elif kind in ("Practitioner", "PractitionerRole", "Organization"):
        pass  # the same elements in both versions
    elif isinstance(kind, str) and fhirmodel.is_resource_type_stu3(kind) and fhirmodel.check(out):
        # R4 does not read it as it is. Its own STU3 problems, if any, are reported at
        # their STU3 paths already; R4's view of it would only add noise.
        return None
    return out


_QUALIFIER = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier"


def _add_name_text(name: Any) -> None:
    """Give a zib2017 HumanName its display text, where joining its parts would mislead.

    zib2017 (nl-core-humanname) puts birth names (qualifier BR), the call name (CL) and
    the initials (IN) side by side in ``given``: ``["Johan", "J."]`` is one man, not
    "Johan J.". The text takes one kind (birth names, else call name, else initials)
    and the family name, which zib2017 already assembles in the order the person uses.
    """
    if not isinstance(name, dict) or "text" in name or not isinstance(name.get("given"), list):
        return
    given: list[Any] = name["given"]
    twins = name.get("_given")
    qualifiers: list[str | None] = []
    for index in range(len(given)):
        twin = twins[index] if isinstance(twins, list) and index < len(twins) else None
        codes = [
            ext.get("valueCode")
            for ext in _list(twin.get("extension") if isinstance(twin, dict) else None)
            if isinstance(ext, dict) and ext.get("url") == _QUALIFIER
        ]
        qualifiers.append(codes[0] if codes and isinstance(codes[0], str) else None)
    if not any(qualifiers):
        return  # plain given names: "given family" is right as it is
    for kinds in (("BR", None), ("CL",), ("IN",)):
        parts = [_str(g) for g, q in zip(given, qualifiers, strict=True) if q in kinds]
        if any(parts):
            break
    text = " ".join(p for p in [*parts, _str(name.get("family"))] if p)
    if text:
        name["text"] = text


def to_r4(resource: JsonObject) -> JsonObject:
    """The R4 form of an STU3 Communication (the canonical form; see the module docstring).

    Total on any JSON object: what cannot be mapped is carried as it is, for the R4
    checks to report. A valid STU3 Communication gives a valid R4 one. ``resource`` is
    left as it is.
    """
    return _Mapping().communication(_json_tree(resource))


# ---------------------------------------------------------------- R4 -> STU3


def from_r4(resource: JsonObject) -> JsonObject:
    """The STU3 form of a valid R4 Communication (such as Wijkbrug stores), in STU3 order."""
    out: JsonObject = {"resourceType": "Communication"}
    _copy(resource, out, "id", "meta", "implicitRules", "language", "text")
    contained: list[JsonObject] = []
    left_out: set[str] = set()
    for item in _list(resource.get("contained")):
        mapped = _contained_from_r4(item)
        if mapped is not None:
            contained.append(mapped)
        elif isinstance(item, dict):
            left_out.add(str(item.get("id")))
    if contained:
        out["contained"] = contained
    extensions: list[Any] = []
    definition: list[Any] = [
        {"reference": url} for url in _list(resource.get("instantiatesCanonical"))
    ]
    definition += [{"reference": url} for url in _list(resource.get("instantiatesUri"))]
    context: Any = None
    for ext in _list(resource.get("extension")):
        url = ext.get("url") if isinstance(ext, dict) else None
        if url == DEFINITION_EXTENSION and "valueReference" in ext:
            definition.append(fhirmodel.json_copy(ext["valueReference"]))
        elif url == CONTEXT_EXTENSION and "valueReference" in ext:
            context = fhirmodel.json_copy(ext["valueReference"])
        else:
            extensions.append(fhirmodel.json_copy(ext))
    if "priority" in resource:
        extensions.append({"url": PRIORITY_EXTENSION, "valueCode": resource["priority"]})
    for answered in _list(resource.get("inResponseTo")):
        extensions.append({"url": IN_RESPONSE_TO_EXTENSION, "valueReference": answered})
    if isinstance(resource.get("topic"), dict):
        extensions.append({"url": TOPIC_EXTENSION, "valueCodeableConcept": resource["topic"]})
    if extensions:
        out["extension"] = fhirmodel.json_copy(extensions)
    _copy(resource, out, "modifierExtension", "identifier")
    if definition:
        out["definition"] = definition
    _copy(resource, out, "basedOn", "partOf")
    status = resource.get("status")
    if isinstance(status, str):
        out["status"] = _STATUS_FROM_R4.get(status, status)
        if status == "not-done":
            out["notDone"] = True
    if "statusReason" in resource:
        out["notDoneReason"] = fhirmodel.json_copy(resource["statusReason"])
    _copy(resource, out, "category", "medium", "subject", "recipient")
    if "about" in resource:
        out["topic"] = fhirmodel.json_copy(resource["about"])
    if "encounter" in resource:
        out["context"] = fhirmodel.json_copy(resource["encounter"])
    elif context is not None:
        out["context"] = context
    _copy(resource, out, "sent", "received")
    sender = _sender_from_r4(resource)
    if sender is not None:
        out["sender"] = sender
    _copy(resource, out, "reasonCode", "reasonReference", "payload", "note")
    _drop_reference_types(out)
    _forget_references(out, left_out, "(not expressible in FHIR STU3)")
    return out


# Never left out: without them the message has no patient or sender.
_CORE = frozenset({"Patient", "Practitioner", "PractitionerRole", "Organization"})


def _contained_from_r4(item: Any) -> JsonObject | None:
    if not isinstance(item, dict):
        return None
    out = fhirmodel.json_copy(item)
    _copy(item, out, "meta")  # drops the profile claims
    _drop_reference_types(out)
    kind = out.get("resourceType")
    if kind == "RelatedPerson" and isinstance(out.get("relationship"), list):
        relationship = out.pop("relationship")
        if relationship:
            out["relationship"] = relationship[0]  # STU3 has one
    if kind not in _CORE and fhirmodel.check_stu3(out):
        return None
    return out


def _sender_from_r4(resource: JsonObject) -> JsonObject | None:
    """STU3 cannot refer to a PractitionerRole as sender: the Nictiz extension can."""
    sender = _obj(resource.get("sender"))
    if sender is None:
        return None
    local = _local_id(sender)
    role = next(
        (
            item
            for item in _list(resource.get("contained"))
            if isinstance(item, dict) and local and item.get("id") == local
        ),
        None,
    )
    if role is None or role.get("resourceType") != "PractitionerRole":
        return fhirmodel.json_copy(sender)
    out: JsonObject = {
        "extension": [
            *fhirmodel.json_copy(_list(sender.get("extension"))),
            {"url": ROLE_EXTENSION, "valueReference": {"reference": f"#{local}"}},
        ]
    }
    practitioner = _obj(role.get("practitioner")) or {}
    if "reference" in practitioner:
        out["reference"] = practitioner["reference"]
    display = sender.get("display") or practitioner.get("display")
    if display:
        out["display"] = display
    return out


# ---------------------------------------------------------------- rendering


def communication_for_case_message(
    msg: CaseMessage,
    *,
    id: str,
    status: str,
    last_updated: datetime,
    case_number: str | None,
) -> JsonObject:
    """The stored Communication of an accepted GP message, in STU3 (for STU3 readers).

    ``status`` is an R4 EventStatus code, as the canonical model has it. The R4 form that
    Wijkbrug stores is ``fhir_r4.communication_for_case_message`` of the same message.
    """
    r4 = fhir_r4.communication_for_case_message(
        msg, id=id, status=status, last_updated=last_updated, case_number=case_number
    )
    return from_r4(r4)


def render_reply(reply: Reply, *, last_updated: datetime, files_base: str = "") -> JsonObject:
    """A nurse's answer as an STU3 Communication for the practice's system.

    The answered Communication is named twice: the R4 ``inResponseTo`` as its HL7
    cross-version extension, and STU3's own ``topic`` (R4 ``about``).
    """
    r4 = fhir_r4.render_reply(reply, last_updated=last_updated, files_base=files_base)
    if reply.in_response_to:
        r4["about"] = fhirmodel.json_copy(r4["inResponseTo"])
    return from_r4(r4)
