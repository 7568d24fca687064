"""The fast road for valid FHIR JSON (``fhirmodel.load_json_checked``) against the full one.

It may only claim "the JSON rules hold" where ``load_json`` and ``check_json`` find nothing,
and its data is always what ``load_json`` gives; anything it doubts takes the full road.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import fhirmodel
from bridge.errors import WijkbrugError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((REPO / "fhir/examples/Communication-wondzorg-example.json").read_bytes())
STU3 = json.loads((REPO / "tests/data/stu3/Communication-wondzorg-practitioner.json").read_bytes())


def both(body: bytes, stu3: bool = False) -> tuple[Any, Any]:
    """(fast road, full road): each its data and issues, or the error it raised."""
    fast = fhirmodel.load_json_checked_stu3 if stu3 else fhirmodel.load_json_checked
    rules = fhirmodel.check_json_stu3 if stu3 else fhirmodel.check_json

    def outcome(read: Any) -> Any:
        try:
            return read()
        except WijkbrugError as error:
            return [(i.code, i.diagnostics, i.expression) for i in error.all_issues()]

    def fast_road() -> Any:
        data, systems = fast(body)
        return data, [] if systems is not None else rules(data)

    def full_road() -> Any:
        data = fhirmodel.load_json(body)
        return data, rules(data)

    return outcome(fast_road), outcome(full_road)


def test_the_example_takes_the_fast_road() -> None:
    data, systems = fhirmodel.load_json_checked(json.dumps(EXAMPLE).encode())
    assert data == EXAMPLE
    assert systems is not None
    assert {id(o) for o in systems} == {id(o) for o in objects(data) if "system" in o}
    data, systems = fhirmodel.load_json_checked_stu3(json.dumps(STU3).encode())
    assert data == STU3
    assert systems is not None
    assert len(systems) == len([o for o in objects(data) if "system" in o]) > 0


def objects(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(o for v in node.values() for o in objects(v))]
    if isinstance(node, list):
        return [o for v in node for o in objects(v)]
    return []


def test_a_repeated_property_name_is_never_taken_for_valid() -> None:
    body = json.dumps(EXAMPLE).replace('"status": ', '"status": "completed", "status": ', 1)
    with pytest.raises(WijkbrugError, match="repeats a property name"):
        fhirmodel.load_json_checked(body.encode())


@pytest.mark.parametrize(
    "text",
    [
        'a "quoted" word',  # escaped quotes: subtracted
        "a back\\slash",  # an escaped backslash: nothing subtracted, the full road
        'both \\" and "',
        "a\nnew line",  # not a control character FHIR forbids
        "a\x01b",  # one it forbids
        "\u00e9\u2028",
    ],
)
def test_escapes_in_strings(text: str) -> None:
    resource = dict(EXAMPLE, payload=[{"contentString": text}])
    for ascii_only in (True, False):
        fast, full = both(json.dumps(resource, ensure_ascii=ascii_only).encode())
        assert fast == full


def test_a_repeated_name_next_to_escaped_quotes() -> None:
    # The repeated property drops a string and a name; a string holding the quotes of the
    # lost ones must not make the count come out even.
    body = json.dumps(dict(EXAMPLE, language="nl")).replace(
        '"language": "nl"', '"language": "\\"\\"\\"\\"", "language": "nl"'
    )
    with pytest.raises(WijkbrugError, match="repeats a property name"):
        fhirmodel.load_json_checked(body.encode())


@pytest.mark.parametrize(
    "change",
    [
        {"status": None},
        {"status": 5},
        {"identifier": []},
        {"identifier": [None]},
        {"identifier": [{}]},
        {"sent": ["2024-01-01"]},
        {"unknown": "x"},
        {"contained": [{"resourceType": "Nonsense"}]},
        {"contained": [{"id": "x"}]},
        {"payload": [{"contentString": "x"}, {"contentAttachment": {"size": "5"}}]},
        {"payload": [{"contentAttachment": {"size": True}}]},
        {"_status": {"extension": [{"url": "u", "valueBoolean": 1}]}},
    ],
)
def test_what_the_rules_report_takes_the_full_road(change: dict[str, Any]) -> None:
    body = json.dumps(dict(EXAMPLE, **change)).encode()
    assert fhirmodel.load_json_checked(body)[1] is None
    fast, full = both(body)
    assert fast == full


def test_twins_with_nulls() -> None:
    name = {
        "given": ["Jan", None],
        "_given": [None, {"extension": [{"url": "u", "valueCode": "IN"}]}],
    }
    patient = dict(EXAMPLE["contained"][0], name=[name])
    body = json.dumps(dict(EXAMPLE, contained=[patient, *EXAMPLE["contained"][1:]])).encode()
    fast, full = both(body)
    assert fast == full


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(["status", "identifier", "payload", "subject", "_sent", "x", "contained"]),
    value=json_values,
    stu3=st.booleans(),
)
def test_the_roads_agree(key: str, value: Any, stu3: bool) -> None:
    base = STU3 if stu3 else EXAMPLE
    fast, full = both(json.dumps(dict(base, **{key: value})).encode(), stu3)
    assert fast == full
