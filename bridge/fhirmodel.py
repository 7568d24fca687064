"""The one door to ``fhir.resources``: FHIR R4 (4.0.1) through its R4B models.

    JSON bytes --load_json()--+
                              +--> FHIR JSON dict --check()--> [Issue, ...]
    XML bytes  --load_xml()---+          |           (JSON rules + R4B pydantic model)
                                         +--dump_xml()--> XML bytes
                                         +--model()-----> R4B model --dump()--> dict

``fhir.resources`` 8 has R5 at its root and no R4 package. Its R4B (4.3.0) models are the
closest; for the resources Wijkbrug exchanges (Communication, Patient, Practitioner,
PractitionerRole, Organization, Bundle, OperationOutcome, CapabilityStatement) they have
exactly the R4 elements. Differences that remain (see also docs and tests):

- R4B's ``Extension.value[x]`` lacks R4's ``valueMeta`` and adds ``valueCodeableReference``
  and ``valueRatioRange``; R4-only resource types (``MedicinalProduct*``,
  ``EffectEvidenceSynthesis``, ...) are unknown to R4B.
- The models do not enforce required code bindings (``status``, ``priority``) and coerce
  lax JSON (``"true"`` for a boolean). :func:`check` adds the JSON rules FHIR asks for;
  callers check the codes they care about.

Only this module imports ``fhir.resources`` (always ``fhir.resources.R4B``, never the R5
root). The XML mapping is our own rather than ``model_validate_xml``: that one loses the
path of an error, fails with ``KeyError`` on an unknown element, and re-formats instants.
Keeping the client's FHIR JSON (or its exact XML equivalent) as *the* resource means a
Communication round-trips unchanged.

Diagnostics never contain input values: a resource carries patient data.
"""

from __future__ import annotations

import json
import marshal
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cache, lru_cache
from typing import Any, TypeVar, cast

from fhir.resources import R4B
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.utils import (
    determine_version_prefix_from_class,
    get_fhir_type_name,
    is_list_type,
    is_primitive_type,
)
from lxml import etree  # type: ignore[import-untyped]  # no stubs installed
from pydantic import ValidationError

from bridge.errors import ErrorCode, Issue, WijkbrugError

FHIR_VERSION = "4.0.1"
FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
MAX_DEPTH = 48  # far deeper than any real resource; bounds recursion on hostile input

JsonObject = dict[str, Any]
_J = TypeVar("_J")

_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


# ---------------------------------------------------------------- type metadata


@dataclass(frozen=True)
class _Field:
    """One element of a FHIR type, as the R4B model declares it."""

    name: str  # JSON property and XML element name
    many: bool
    type_name: str  # FHIR type: "boolean", "string", "CodeableConcept", "Resource", ...
    primitive: bool
    is_resource: bool = dataclass_field(init=False)  # a contained resource (checked per element)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_resource", self.type_name == "Resource")


@cache
def _model_class(type_name: str) -> type[FHIRAbstractModel]:
    return R4B.get_fhir_model_class(type_name)


@lru_cache(maxsize=1024)  # bounded: names come from untrusted input
def is_resource_type(name: str) -> bool:
    """Whether ``name`` is a resource type R4B knows (``Patient``; not ``HumanName``)."""
    if not _NAME.match(name) or not name[0].isupper():
        return False
    try:
        klass = _model_class(name)
    except ValueError:
        return False
    return bool(klass.has_resource_base()) and name not in ("Resource", "DomainResource")


@cache
def _fields(type_name: str) -> dict[str, _Field]:
    """The elements of a FHIR type, in the order FHIR XML requires."""
    klass = _model_class(type_name)
    prefix = determine_version_prefix_from_class(klass)
    by_alias = {f.alias: f for f in klass.model_fields.values() if f.alias}
    out: dict[str, _Field] = {}
    for name in klass.elements_sequence():
        info = by_alias[name]
        out[name] = _Field(
            name=name,
            many=is_list_type(info),
            type_name=get_fhir_type_name(info, prefix=prefix),
            primitive=is_primitive_type(info),
        )
    return out


def _is_element_id_attribute(type_name: str) -> bool:
    # Resources carry ``id`` as an element; every other type as an XML attribute.
    return not is_resource_type(type_name)


# ---------------------------------------------------------------- JSON


def _no_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
    out = dict(pairs)
    if len(out) != len(pairs):
        # A repeated key would let one copy slip past a check made on the other.
        raise _DuplicateKeyError
    return out


class _DuplicateKeyError(ValueError):
    pass


def _reject_constant(_: str) -> Any:
    raise _NonFiniteNumberError


class _NonFiniteNumberError(ValueError):
    pass


def _syntax_error(message: str) -> WijkbrugError:
    return WijkbrugError.from_issues([Issue(ErrorCode.INVALID, message)])


def load_json(body: bytes) -> JsonObject:
    """A JSON object from UTF-8 bytes; ``WijkbrugError`` (INVALID) if it is not one.

    The error says where the syntax breaks, never what the body contains.
    """
    if not body.strip():
        raise _syntax_error("the request body is empty")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _syntax_error(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _syntax_error(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except _DuplicateKeyError:
        raise _syntax_error("malformed JSON: an object repeats a property name") from None
    except _NonFiniteNumberError:
        raise _syntax_error("malformed JSON: NaN and Infinity are not JSON numbers") from None
    except RecursionError:
        raise _syntax_error("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise _syntax_error("a FHIR resource must be a JSON object")
    return data


# ---------------------------------------------------------------- XML -> JSON


def _xml_parser() -> etree.XMLParser:
    # No DTDs, no entities, no network: FHIR XML has none, and they are attack surface.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        remove_comments=True,
        remove_pis=True,
        huge_tree=False,
    )


def load_xml(body: bytes) -> tuple[JsonObject, list[Issue]]:
    """FHIR XML to its FHIR JSON form, with the issues met on the way.

    Syntax errors raise ``WijkbrugError`` (INVALID) with line and column; elements the
    R4B model does not know are left out and reported as issues with their path.
    """
    if not body.strip():
        raise _syntax_error("the request body is empty")
    try:
        root = etree.fromstring(body, parser=_xml_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise _syntax_error(f"malformed XML at line {line} column {column}") from None
    if root.getroottree().docinfo.doctype:
        raise _syntax_error("FHIR XML may not contain a DOCTYPE")
    qname = etree.QName(root)
    if qname.namespace != FHIR_NS:
        raise _syntax_error(f"the root element is not in the FHIR namespace {FHIR_NS}")
    resource_type = qname.localname
    if not is_resource_type(resource_type):
        # Let the caller say which types it accepts; there is nothing to map here.
        return {"resourceType": resource_type}, []
    issues: list[Issue] = []
    return _xml_resource(root, resource_type, issues, 0), issues


def _xml_resource(el: Any, path: str, issues: list[Issue], depth: int) -> JsonObject:
    resource_type = etree.QName(el).localname
    out: JsonObject = {"resourceType": resource_type}
    out.update(_xml_complex(el, resource_type, path, issues, depth))
    return out


def _xml_complex(el: Any, type_name: str, path: str, issues: list[Issue], depth: int) -> JsonObject:
    if depth > MAX_DEPTH:
        issues.append(Issue(ErrorCode.INVALID, "nested too deeply", path))
        return {}
    fields = _fields(type_name)
    out: JsonObject = {}
    for attr, value in el.attrib.items():
        if attr == "id" and _is_element_id_attribute(type_name):
            out["id"] = value
        elif attr == "url" and type_name == "Extension":
            out["url"] = value
        else:
            issues.append(Issue(ErrorCode.INVALID, "unknown XML attribute", _attr_path(path, attr)))
    if el.text and el.text.strip():
        issues.append(Issue(ErrorCode.INVALID, "text content is not allowed here", path))
    for child in el:
        if not isinstance(child.tag, str):
            continue  # an unresolved entity reference: parse options leave nothing else
        if child.tail and child.tail.strip():
            issues.append(Issue(ErrorCode.INVALID, "text content is not allowed here", path))
        qname = etree.QName(child)
        name = qname.localname
        field = fields.get(name)
        if field is not None and field.type_name == "xhtml" and qname.namespace == XHTML_NS:
            out[name] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        if qname.namespace != FHIR_NS:
            issues.append(
                Issue(ErrorCode.INVALID, "element outside the FHIR namespace", _join(path, name))
            )
            continue
        if (
            field is None
            or field.type_name == "xhtml"
            or (name == "id" and _is_element_id_attribute(type_name))
            or (name == "url" and type_name == "Extension")
        ):
            issues.append(Issue(ErrorCode.INVALID, "unknown element", _join(path, name)))
            continue
        index = len(out.get(name, ())) if field.many else None
        child_path = _join(path, name, index)
        if not field.many and (name in out or f"_{name}" in out):
            issues.append(Issue(ErrorCode.INVALID, "element may occur only once", child_path))
            continue
        if field.primitive:
            value, extra = _xml_primitive(child, field, child_path, issues, depth)
            _put_primitive(out, field, value, extra)
        elif field.is_resource:
            inner = [c for c in child if isinstance(c.tag, str)]
            if len(inner) != 1 or etree.QName(inner[0]).namespace != FHIR_NS:
                issues.append(Issue(ErrorCode.INVALID, "expected one resource", child_path))
                continue
            inner_type = etree.QName(inner[0]).localname
            if not is_resource_type(inner_type):
                issues.append(Issue(ErrorCode.INVALID, "unknown resource type", child_path))
                continue
            _put(out, field, _xml_resource(inner[0], child_path, issues, depth + 1))
        else:
            value = _xml_complex(child, field.type_name, child_path, issues, depth + 1)
            _put(out, field, value)
    return out


def _xml_primitive(
    el: Any, field: _Field, path: str, issues: list[Issue], depth: int
) -> tuple[Any, JsonObject | None]:
    """The JSON value of a primitive element and its ``_name`` twin (id, extensions)."""
    extra: JsonObject = {}
    for attr, value in el.attrib.items():
        if attr == "id":
            extra["id"] = value
        elif attr != "value":
            issues.append(Issue(ErrorCode.INVALID, "unknown XML attribute", _attr_path(path, attr)))
    if el.text and el.text.strip():
        issues.append(Issue(ErrorCode.INVALID, "text content is not allowed here", path))
    for child in el:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.namespace == FHIR_NS and qname.localname == "extension":
            extensions: list[Any] = extra.setdefault("extension", [])
            ext_path = _join(path, "extension", len(extensions))
            extensions.append(_xml_complex(child, "Extension", ext_path, issues, depth + 1))
        else:
            issues.append(Issue(ErrorCode.INVALID, "unknown element", _join(path, qname.localname)))
    raw = el.get("value")
    if raw is None:
        if not extra:
            issues.append(Issue(ErrorCode.INVALID, "element has no value and no extensions", path))
        return None, extra or None
    return _primitive_from_text(raw, field.type_name, path, issues), extra or None


def _primitive_from_text(raw: str, type_name: str, path: str, issues: list[Issue]) -> Any:
    """The JSON value of an XML ``value`` attribute (JSON has booleans and numbers)."""
    if type_name == "boolean":
        if raw in ("true", "false"):
            return raw == "true"
        issues.append(Issue(ErrorCode.VALUE, "not a boolean (true or false)", path))
    elif type_name in _INTEGERS:
        if _INT.match(raw):
            return int(raw)
        issues.append(Issue(ErrorCode.VALUE, "not an integer", path))
    elif type_name == "decimal":
        if _DECIMAL.match(raw):
            # JSON has one number type; the trailing zeros of a decimal are not kept.
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        issues.append(Issue(ErrorCode.VALUE, "not a decimal", path))
    else:
        return raw
    return None


def _put(out: JsonObject, field: _Field, value: Any) -> None:
    if field.many:
        out.setdefault(field.name, []).append(value)
    else:
        out[field.name] = value


def _put_primitive(out: JsonObject, field: _Field, value: Any, extra: JsonObject | None) -> None:
    """A primitive and its ``_name`` twin; lists of the two stay aligned (FHIR JSON rule)."""
    name, twin = field.name, f"_{field.name}"
    if not field.many:
        if value is not None:
            out[name] = value
        if extra is not None:
            out[twin] = extra
        return
    values: list[Any] = out.setdefault(name, [])
    values.append(value)
    if extra is not None or twin in out:
        extras: list[Any] = out.setdefault(twin, [None] * (len(values) - 1))
        extras.append(extra)


def _join(path: str, name: str, index: int | None = None) -> str:
    shown = name if _NAME.match(name) else "<invalid name>"
    return f"{path}.{shown}" + (f"[{index}]" if index is not None else "")


def _attr_path(path: str, attr: str) -> str:
    local = etree.QName(attr).localname if attr.startswith("{") else attr
    return f"{path}.@{local if _NAME.match(local) else '<invalid name>'}"


# ---------------------------------------------------------------- JSON rules
#
# One walk over every element of every message posted: the hottest code of the parse
# after the model itself. Each type's elements are looked up in one dict that also holds
# the ``_name`` twins of its primitives, and a path string is made only where the walk
# goes down into an object or has an issue to report.

_SKIP, _STRING, _VALUE, _TWIN, _RESOURCE, _COMPLEX = range(6)


@dataclass(frozen=True, slots=True)
class _Slot:
    """What one JSON property of a type holds, and how the walk checks it."""

    kind: int
    name: str  # the element's name (without the ``_`` of a twin)
    many: bool
    type_name: str
    partner: str  # the other half of a primitive and its twin ("_name" / "name"); else ""
    expected: str | None  # the JSON type a non-string primitive needs (its problem text)


_SKIP_SLOT = _Slot(_SKIP, "resourceType", False, "string", "", None)


@cache
def _slots(type_name: str) -> dict[str, _Slot]:
    """The JSON properties of a FHIR type: every element, and ``_name`` for primitives."""
    out: dict[str, _Slot] = {}
    for name, field in _fields(type_name).items():
        if field.primitive:
            expected = _NON_STRING.get(field.type_name)
            kind = _STRING if expected is None else _VALUE
            out[name] = _Slot(kind, name, field.many, field.type_name, f"_{name}", expected)
            out[f"_{name}"] = _Slot(_TWIN, name, field.many, "Element", name, None)
        else:
            kind = _RESOURCE if field.is_resource else _COMPLEX
            out[name] = _Slot(kind, name, field.many, field.type_name, "", None)
    if is_resource_type(type_name):
        out["resourceType"] = _SKIP_SLOT
    return out


def _check_resource(data: Any, path: str, issues: list[Issue], depth: int) -> None:
    if not isinstance(data, dict):
        issues.append(Issue(ErrorCode.INVALID, "expected a resource (a JSON object)", path))
        return
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        issues.append(Issue(ErrorCode.REQUIRED, "resourceType is missing", f"{path}.resourceType"))
        return
    if not is_resource_type(resource_type):
        issues.append(Issue(ErrorCode.INVALID, "unknown resource type", f"{path}.resourceType"))
        return
    _check_object(data, resource_type, path, issues, depth)


def _check_object(data: Any, type_name: str, path: str, issues: list[Issue], depth: int) -> None:
    if depth > MAX_DEPTH:
        issues.append(Issue(ErrorCode.INVALID, "nested too deeply", path))
        return
    if not isinstance(data, dict):
        issues.append(Issue(ErrorCode.INVALID, "expected a JSON object", path))
        return
    if not data or (len(data) == 1 and "resourceType" in data):
        issues.append(Issue(ErrorCode.INVALID, "empty objects are not allowed", path))
        return
    slots = _slots(type_name)
    for key, value in data.items():
        slot = slots.get(key)
        if slot is None:
            issues.append(Issue(ErrorCode.INVALID, "unknown element", _join(path, key)))
            continue
        kind = slot.kind
        if not slot.many:
            if kind == _STRING and value.__class__ is str and value.isprintable():
                continue  # most elements: a string primitive, nothing to report
            if kind == _COMPLEX and value.__class__ is dict:
                _check_object(value, slot.type_name, f"{path}.{slot.name}", issues, depth + 1)
            elif kind != _SKIP:
                _check_one(value, slot, f"{path}.{slot.name}", issues, depth)
            continue
        child_path = f"{path}.{slot.name}"
        if not isinstance(value, list):
            issues.append(Issue(ErrorCode.INVALID, "expected a JSON array", child_path))
            continue
        if not value:
            issues.append(Issue(ErrorCode.INVALID, "empty arrays are not allowed", child_path))
            continue
        partner = data.get(slot.partner) if slot.partner else None
        if isinstance(partner, list) and len(partner) != len(value):
            issues.append(
                Issue(ErrorCode.INVALID, "value and extension arrays differ in length", child_path)
            )
        for index, item in enumerate(value):
            if kind == _STRING and item.__class__ is str and item.isprintable():
                continue
            if kind == _COMPLEX and item.__class__ is dict:
                _check_object(item, slot.type_name, f"{child_path}[{index}]", issues, depth + 1)
            elif item is not None:
                _check_one(item, slot, f"{child_path}[{index}]", issues, depth)
            elif not isinstance(partner, list) or index >= len(partner) or partner[index] is None:
                # A null keeps the two arrays of a primitive aligned; it needs a partner.
                issues.append(
                    Issue(ErrorCode.INVALID, "null is not allowed", f"{child_path}[{index}]")
                )


def _check_one(value: Any, slot: _Slot, path: str, issues: list[Issue], depth: int) -> None:
    """One value that is not a plain string, nor an object of a complex type."""
    kind = slot.kind
    if isinstance(value, list):
        issues.append(Issue(ErrorCode.INVALID, "expected a single value, not an array", path))
    elif value is None:
        issues.append(Issue(ErrorCode.INVALID, "null is not allowed", path))
    elif kind in (_STRING, _VALUE):
        problem = _primitive_problem(value, slot.type_name, slot.expected)
        if problem:
            issues.append(Issue(ErrorCode.VALUE, problem, path))
    elif kind == _RESOURCE:
        _check_resource(value, path, issues, depth + 1)
    else:  # a complex type, or a primitive's ``_name`` twin (an Element)
        _check_object(value, slot.type_name, path, issues, depth + 1)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _primitive_problem(value: Any, type_name: str, expected: str | None) -> str | None:
    """What is wrong with the JSON type of a primitive (its format is the model's job).

    ``expected`` is the problem text of a primitive that is not a JSON string."""
    if expected is None:  # most primitives are JSON strings
        if not isinstance(value, str):
            return "expected a JSON string"
        return (
            "control characters are not allowed in FHIR strings" if _CONTROL.search(value) else None
        )
    if isinstance(value, bool):
        return None if type_name == "boolean" else expected
    if type_name == "decimal":
        return None if isinstance(value, int | float) else expected
    return None if isinstance(value, int) and type_name != "boolean" else expected


_NON_STRING = {
    "boolean": "expected a JSON boolean",
    "decimal": "expected a JSON number",
    **{name: "expected a JSON integer" for name in _INTEGERS},
}


# ------------------------------------------------- JSON rules and loading, for valid input
#
# Most messages posted are valid, and for those the walk above does more than it must:
# it carries paths and collects issues. ``load_json_checked`` reads a body once, without
# the repeated-name hook, and walks it once with ``_clean_resource``: a walk that only
# answers "nothing to report" (or gives up at the first doubt) and counts the properties
# and string values it passed. A body whose double quotes are exactly two per property
# and string counted has no repeated property name: every property name and string of
# the text is one quoted token (escaped quotes only add quotes), and a repeated name
# leaves one property fewer in the parsed object than in the text. Whenever the fast
# path has any doubt, the body takes the full road (``load_json`` and ``check``), so
# what is reported never depends on which road a body took.
#
# Escaped quotes (``\"``, as in every narrative's ``xmlns=\"...\"``) are subtracted when
# the body has no escaped backslash: then each ``\"`` in it is an escaped quote. With one,
# nothing is subtracted; the count can then only come out too high, never too low.


# ``json.loads`` with an argument makes a decoder per call; this one is made once.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_json_checked(body: bytes) -> tuple[JsonObject, list[JsonObject] | None]:
    """:func:`load_json`, and the JSON objects in it that have a ``system`` property
    (identifiers, codings, ...) when it passes the FHIR JSON rules already (then
    ``check(resource, json_rules=False)`` is the whole check); else None."""
    try:
        data = _DECODER.decode(body.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        data = None  # load_json says what is wrong, exactly as it always has
    if data.__class__ is dict:
        systems: list[JsonObject] = []
        counted = _clean_resource(data, 0, systems)
        escaped = body.count(b'\\"') if b"\\\\" not in body else 0
        if counted >= 0 and body.count(b'"') - escaped == 2 * counted:
            return data, systems
    return load_json(body), None


def _clean_resource(data: Any, depth: int, systems: list[JsonObject]) -> int:
    """What :func:`_clean_object` counts in a resource, or -1 where ``_check_resource``
    might report something."""
    if data.__class__ is not dict:
        return -1
    resource_type = data.get("resourceType")
    if resource_type.__class__ is not str or not is_resource_type(resource_type):
        return -1
    return _clean_object(data, _slots(resource_type), depth, systems)


def _clean_object(
    data: JsonObject, slots: dict[str, _Slot], depth: int, systems: list[JsonObject]
) -> int:
    """The number of properties and string values in ``data`` and below it when
    ``_check_object`` would report nothing there; -1 at the first thing it might report.
    A null in an array gives up too: it is valid only beside its twin, which the full
    walk checks. The objects with a ``system`` go to ``systems`` on the way."""
    if depth > MAX_DEPTH or not data or (len(data) == 1 and "resourceType" in data):
        return -1
    if "system" in data:
        systems.append(data)
    counted = len(data)
    for key, value in data.items():
        slot = slots.get(key)
        if slot is None:
            return -1
        kind = slot.kind
        if not slot.many:
            if kind == _STRING:
                if value.__class__ is not str or not (
                    value.isprintable() or _CONTROL.search(value) is None
                ):
                    return -1
                counted += 1
                continue
            if kind in (_COMPLEX, _TWIN):
                inner = -1
                if value.__class__ is dict:
                    inner = _clean_object(value, _slots(slot.type_name), depth + 1, systems)
            elif kind == _RESOURCE:
                inner = _clean_resource(value, depth + 1, systems)
            elif kind == _VALUE:
                problem = _primitive_problem(value, slot.type_name, slot.expected)
                inner = -1 if problem else 0
            else:  # resourceType, checked by _clean_resource
                inner = 1 if value.__class__ is str else -1
            if inner < 0:
                return -1
            counted += inner
            continue
        if value.__class__ is not list or not value:
            return -1
        if slot.partner:
            partner = data.get(slot.partner)
            if partner.__class__ is list and len(partner) != len(value):
                return -1
        if kind == _STRING:
            for item in value:
                if item.__class__ is not str or not (
                    item.isprintable() or _CONTROL.search(item) is None
                ):
                    return -1
            counted += len(value)
        elif kind in (_COMPLEX, _TWIN):
            inner_slots = _slots(slot.type_name)
            for item in value:
                if item.__class__ is not dict:
                    return -1
                inner = _clean_object(item, inner_slots, depth + 1, systems)
                if inner < 0:
                    return -1
                counted += inner
        elif kind == _RESOURCE:
            for item in value:
                inner = _clean_resource(item, depth + 1, systems)
                if inner < 0:
                    return -1
                counted += inner
        else:
            for item in value:
                if _primitive_problem(item, slot.type_name, slot.expected) is not None:
                    return -1
    return counted


# ---------------------------------------------------------------- the R4B model


def check(resource: JsonObject, *, json_rules: bool = True) -> list[Issue]:
    """Every structural problem of a FHIR JSON resource, each with its FHIRPath.

    First the FHIR JSON rules (JSON types, no nulls or empty objects/arrays, known
    elements), then the R4B model (formats, cardinality, choice types). Empty if valid.
    ``json_rules=False`` leaves the first part out, for a resource built from input
    whose JSON has passed those rules already (an STU3 message mapped to R4).
    """
    return _validate(resource, json_rules)[1]


def json_copy(value: _J) -> _J:
    """A deep copy of JSON data (dicts, lists, strings, numbers, booleans, None).

    A ``marshal`` round trip: it keeps every one of those types exactly (floats to the
    bit, key order) at C speed, about twice as fast as a recursive copy in Python and
    many times faster than ``copy.deepcopy``. Its nesting limit is above what
    ``json.loads`` can produce."""
    data: Any = value
    # Loads only what the line itself has just dumped: nothing from outside.
    return cast(_J, marshal.loads(marshal.dumps(data)))  # noqa: S302


def check_json(resource: JsonObject) -> list[Issue]:
    """The FHIR JSON rules only (JSON types, no nulls or empty objects/arrays, known
    elements), each problem with its FHIRPath; the model's own checks are left out."""
    issues: list[Issue] = []
    _check_resource(resource, _root_path(resource), issues, 0)
    return _dedupe(issues)


def model(resource: JsonObject) -> FHIRAbstractModel:
    """The R4B model of a FHIR JSON resource; ``WijkbrugError`` with all issues if invalid."""
    instance, issues = _validate(resource)
    if issues or instance is None:
        raise WijkbrugError.from_issues(issues or [Issue(ErrorCode.INVALID, "invalid resource")])
    return instance


def model_from_json(body: bytes) -> FHIRAbstractModel:
    """Parse FHIR JSON bytes into an R4B model."""
    return model(load_json(body))


def model_from_xml(body: bytes) -> FHIRAbstractModel:
    """Parse FHIR XML bytes into an R4B model."""
    resource, issues = load_xml(body)
    if issues:
        raise WijkbrugError.from_issues(issues)
    return model(resource)


def dump(instance: FHIRAbstractModel) -> JsonObject:
    """The FHIR JSON of a model (no ``None`` values)."""
    out: JsonObject = instance.model_dump(mode="json", exclude_none=True)
    return out


def _root_path(resource: JsonObject) -> str:
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str) and is_resource_type(resource_type):
        return resource_type
    return "Resource"


def _validate(
    resource: JsonObject, json_rules: bool = True
) -> tuple[FHIRAbstractModel | None, list[Issue]]:
    root = _root_path(resource)
    issues: list[Issue] = []
    if json_rules or root == "Resource":
        _check_resource(resource, root, issues, 0)
    if root == "Resource":
        return None, issues
    instance: FHIRAbstractModel | None = None
    try:
        instance = _model_class(root).model_validate(resource)
    except ValidationError as exc:
        issues.extend(issues_from_validation_error(exc, resource))
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        # The model trips over input the JSON rules above have already reported.
        if not issues:
            issues.append(Issue(ErrorCode.INVALID, "the resource could not be validated", root))
    return (instance if not issues else None), _dedupe(issues)


def _dedupe(issues: list[Issue]) -> list[Issue]:
    """One issue per place: the JSON rules and the model often see the same problem."""
    seen: set[str | None] = set()
    out: list[Issue] = []
    for issue in issues:
        if issue.expression in seen:
            continue
        seen.add(issue.expression)
        out.append(issue)
    return out


def issues_from_validation_error(error: ValidationError, resource: JsonObject) -> list[Issue]:
    """Pydantic errors as issues with FHIRPath expressions, never echoing input values."""
    out: list[Issue] = []
    for detail in error.errors(include_url=False):
        code, diagnostics = _describe(detail)
        out.append(Issue(code, diagnostics, _loc_to_path(resource, detail["loc"])))
    return out


_FORMATS = {
    "Date": "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)",
    "DateTime": "not a FHIR dateTime (a date, or date and time with seconds and a time zone)",
    "Instant": "not a FHIR instant (date and time with seconds and a time zone)",
    "Time": "not a FHIR time (hh:mm:ss)",
    "Decimal": "not a FHIR decimal",
}
_ONE_OF = re.compile(r"\[([A-Za-z0-9_', ]*)\]")


def _describe(detail: Any) -> tuple[ErrorCode, str]:
    kind: str = detail["type"]
    msg: str = detail["msg"]
    if kind == "extra_forbidden":
        return ErrorCode.INVALID, "unknown element"
    if kind in ("missing", "model_field_validation.missing"):
        return ErrorCode.REQUIRED, "required element is missing"
    if kind in ("fhir-validation-wrong-resource-type", "model_validation_format"):
        return ErrorCode.INVALID, "wrong resource type for this element"
    choices = _ONE_OF.search(msg)
    names = choices.group(1).replace("'", "") if choices else ""
    if kind == "value_error" and "but got multiple" in msg:
        return ErrorCode.INVALID, f"only one of {names} may be given"
    if kind == "value_error" and "Expect any of field value" in msg:
        return ErrorCode.REQUIRED, f"one of {names} is required"
    if kind == "string_pattern_mismatch":
        return ErrorCode.VALUE, "value does not have the format FHIR requires here"
    for prefix, format_ in _FORMATS.items():
        if msg.startswith(f"Value error, {prefix} value string does not match spec regex"):
            return ErrorCode.VALUE, format_
    text = msg.removeprefix("Value error, ")
    value = detail.get("input")
    if isinstance(value, str) and len(value) >= 3 and value in text:
        text = "invalid value"  # never repeat input, whatever the library put in a message
    return ErrorCode.VALUE, text


def _loc_to_path(resource: JsonObject, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as FHIRPath, walking the data for the types of resources."""
    path = _root_path(resource)
    type_name: str | None = path
    node: Any = resource
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if type_name == "Resource":
                type_name = _resource_type_of(node)
            continue
        if part in ("root", "resource_type"):
            if part == "resource_type":
                path += ".resourceType"
            continue
        name = part
        if type_name is not None and type_name != "Resource":
            info = _model_class(type_name).model_fields.get(part)
            name = info.alias if info is not None and info.alias else part
        twin = name.startswith("_")
        name = name.removeprefix("_")  # a primitive's extensions sit on the primitive
        path = _join(path, name)
        node = node.get(f"_{name}" if twin else name) if isinstance(node, dict) else None
        field = _fields(type_name).get(name) if type_name and type_name != "Resource" else None
        if field is None or field.primitive:
            type_name = "Element" if twin else None
        elif field.is_resource:
            type_name = "Resource" if field.many else _resource_type_of(node)
        else:
            type_name = field.type_name
    return path


def _resource_type_of(node: Any) -> str | None:
    value = node.get("resourceType") if isinstance(node, dict) else None
    return value if isinstance(value, str) and is_resource_type(value) else None


# ---------------------------------------------------------------- JSON -> XML


def dump_xml(resource: JsonObject) -> bytes:
    """FHIR XML (UTF-8, with declaration) for a valid FHIR JSON resource.

    The inverse of :func:`load_xml`: values are written as given, so nothing is
    re-formatted on the way. Raises ``ValueError`` for a key the type does not have.
    """
    resource_type = resource["resourceType"]
    root = etree.Element(f"{{{FHIR_NS}}}{resource_type}", nsmap={None: FHIR_NS})
    _write(root, resource, resource_type)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _write(el: Any, data: JsonObject, type_name: str) -> None:
    fields = _fields(type_name)
    known = set(fields) | {f"_{name}" for name in fields} | {"resourceType"}
    unknown = sorted(key for key in data if key not in known)
    if unknown:
        raise ValueError(f"{type_name} has no element(s) {unknown}")
    if "id" in data and _is_element_id_attribute(type_name):
        el.set("id", data["id"])
    if type_name == "Extension" and "url" in data:
        el.set("url", data["url"])
    for name, field in fields.items():
        if name in ("id", "url") and name in el.attrib:
            continue  # written as an attribute above
        value: Any = data.get(name)
        twin: Any = data.get(f"_{name}")
        if value is None and twin is None:
            continue
        if field.type_name == "xhtml":
            el.append(_xhtml(value))
        elif field.primitive:
            _write_primitive(el, field, value, twin)
        else:
            for item in value if field.many else [value]:
                child = etree.SubElement(el, f"{{{FHIR_NS}}}{name}")
                if field.is_resource:
                    inner = etree.SubElement(child, f"{{{FHIR_NS}}}{item['resourceType']}")
                    _write(inner, item, item["resourceType"])
                else:
                    _write(child, item, field.type_name)


def _write_primitive(el: Any, field: _Field, value: Any, twin: Any) -> None:
    values = (value or []) if field.many else [value]
    twins = (twin or []) if field.many else [twin]
    for index in range(max(len(values), len(twins))):
        item = values[index] if index < len(values) else None
        extra = twins[index] if index < len(twins) else None
        child = etree.SubElement(el, f"{{{FHIR_NS}}}{field.name}")
        if extra and "id" in extra:
            child.set("id", extra["id"])
        if item is not None:
            child.set("value", _xml_value(item))
        for extension in (extra or {}).get("extension", []):
            _write(etree.SubElement(child, f"{{{FHIR_NS}}}extension"), extension, "Extension")


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _xhtml(div: str) -> Any:
    try:
        el = etree.fromstring(div.encode("utf-8"), parser=_xml_parser())
    except etree.XMLSyntaxError:
        raise ValueError("narrative div is not well-formed XHTML") from None
    if etree.QName(el).namespace != XHTML_NS:
        raise ValueError("narrative div is not in the XHTML namespace")
    return el


# Keep the public surface explicit: the adapter and conformance modules use only these.
__all__ = [
    "FHIR_NS",
    "FHIR_VERSION",
    "JsonObject",
    "check",
    "check_json",
    "dump",
    "dump_xml",
    "is_resource_type",
    "issues_from_validation_error",
    "json_copy",
    "load_json",
    "load_json_checked",
    "load_xml",
    "model",
    "model_from_json",
    "model_from_xml",
]


# ---- STU3
#
# STU3 (3.0.2) senders get the same door, through ``fhir.resources.STU3``: the same JSON
# rules, the same XML mapping, the same issue paths. The machinery above finds the FHIR
# types of elements through three module-level lookups (``_model_class``,
# ``is_resource_type``, ``_fields``). Rather than keep a second copy of several hundred
# lines of hostile-input parsing, the STU3 door runs the *same* function code against a
# namespace in which those lookups answer from the STU3 models: one implementation, two
# FHIR versions. (When this file can be refactored freely, passing the version explicitly
# through the machinery is the cleaner form of the same idea; the public STU3 functions
# below would not change.) The namespace is a snapshot taken at import time.

from collections.abc import Callable  # noqa: E402  (the STU3 section keeps to its own lines)
from types import FunctionType  # noqa: E402

FHIR_VERSION_STU3 = "3.0.2"


def _stu3_model_class(type_name: str) -> type[FHIRAbstractModel]:
    # Imported on first use: a process that only speaks R4 never loads the STU3 models.
    from fhir.resources import STU3  # the STU3 package only; never the R5 root

    klass: type[FHIRAbstractModel] = STU3.get_fhir_model_class(type_name)
    return klass


def _machinery_for(model_class: Callable[[str], type[FHIRAbstractModel]]) -> dict[str, Any]:
    """This module's functions, re-bound so that every model lookup uses ``model_class``."""
    namespace: dict[str, Any] = dict(globals())
    for name, value in list(namespace.items()):
        function = getattr(value, "__wrapped__", value)
        if not isinstance(function, FunctionType) or function.__module__ != __name__:
            continue
        bound = FunctionType(
            function.__code__, namespace, name, function.__defaults__, function.__closure__
        )
        bound.__kwdefaults__ = function.__kwdefaults__
        bound.__doc__ = function.__doc__
        parameters = getattr(value, "cache_parameters", None)
        # A cached lookup gets a cache of its own: the two versions never share answers.
        namespace[name] = lru_cache(**parameters())(bound) if parameters else bound
    namespace["_model_class"] = cache(model_class)
    return namespace


_STU3 = _machinery_for(_stu3_model_class)


def is_resource_type_stu3(name: str) -> bool:
    """Whether ``name`` is a resource type of FHIR STU3 (``Patient``; not ``HumanName``)."""
    known: bool = _STU3["is_resource_type"](name)
    return known


def load_json_checked_stu3(body: bytes) -> tuple[JsonObject, list[JsonObject] | None]:
    """:func:`load_json`, and the objects with a ``system`` when the resource passes the
    STU3 FHIR JSON rules already, else None (see :func:`load_json_checked`)."""
    loaded: tuple[JsonObject, list[JsonObject] | None] = _STU3["load_json_checked"](body)
    return loaded


def load_xml_stu3(body: bytes) -> tuple[JsonObject, list[Issue]]:
    """STU3 FHIR XML to its FHIR JSON form, with the issues met on the way (as :func:`load_xml`)."""
    loaded: tuple[JsonObject, list[Issue]] = _STU3["load_xml"](body)
    return loaded


def check_stu3(resource: JsonObject) -> list[Issue]:
    """Every structural problem of an STU3 FHIR JSON resource, each with its FHIRPath."""
    issues: list[Issue] = _STU3["check"](resource)
    return issues


def check_json_stu3(resource: JsonObject) -> list[Issue]:
    """The FHIR JSON rules of STU3 only (see :func:`check_json`)."""
    issues: list[Issue] = _STU3["check_json"](resource)
    return issues


def model_stu3(resource: JsonObject) -> FHIRAbstractModel:
    """The STU3 model of a FHIR JSON resource; ``WijkbrugError`` with all issues if invalid."""
    instance: FHIRAbstractModel = _STU3["model"](resource)
    return instance


def dump_xml_stu3(resource: JsonObject) -> bytes:
    """STU3 FHIR XML for a valid STU3 FHIR JSON resource (the inverse of :func:`load_xml_stu3`)."""
    out: bytes = _STU3["dump_xml"](resource)
    return out


__all__ += [
    "FHIR_VERSION_STU3",
    "check_json_stu3",
    "check_stu3",
    "dump_xml_stu3",
    "is_resource_type_stu3",
    "load_json_checked_stu3",
    "load_xml_stu3",
    "model_stu3",
]
