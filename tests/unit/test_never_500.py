"""Property-based: whatever a practice system sends, the answer is a 4xx that explains,
never a 500, on every endpoint that takes input (and the R4 parser only ever raises
WijkbrugError). Random bytes, random JSON, and mutations of real example messages."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import fhir_r4
from bridge.canonical import CareType
from bridge.config import generate_config, load_settings
from bridge.errors import WijkbrugError
from bridge.service import Bridge
from bridge.web.app import create_app
from tests.support.examples import region

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "/fhir/Communication": (
        REPO / "fhir/examples/Communication-wondzorg-example.json"
    ).read_bytes(),
    "/fhir/stu3/Communication": (
        REPO / "tests/data/stu3/Communication-wondzorg-practitioner.json"
    ).read_bytes(),
    "/edifact": (REPO / "tests/data/edifact/medvri-normal.edi").read_bytes(),
}
CONTENT_TYPES = {
    "/fhir/Communication": "application/fhir+json",
    "/fhir/stu3/Communication": "application/fhir+json",
    "/edifact": "application/edifact",
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """A real message with a few bytes changed, cut, or a JSON value replaced."""
    how = draw(st.sampled_from(["flip", "cut", "replace"]))
    if how == "flip" and original:
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 5))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "cut":
        return original[: draw(st.integers(0, len(original)))]
    try:
        doc = json.loads(original)
    except ValueError:
        return original.replace(b"+", draw(st.binary(max_size=3)), 1)
    key = draw(st.sampled_from(sorted(doc))) if isinstance(doc, dict) and doc else None
    if key is not None:
        doc[key] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings_ = load_settings(generate_config(tmp_path_factory.mktemp("never500")))
    with TestClient(create_app(settings_, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        bridge.store.add_route(CareType.WONDZORG, 1071, 1079, "12345678")  # the examples' area
        tokens = {
            "/fhir/Communication": bridge.store.add_client("01234567", "r4")[1],
            "/fhir/stu3/Communication": bridge.store.add_client("01234567", "s", "fhir-stu3")[1],
            "/edifact": bridge.store.add_client("01234567", "e", "edifact-medvri")[1],
        }
        yield client, tokens


def post(api: tuple[TestClient, dict[str, str]], path: str, body: bytes) -> Any:
    client, tokens = api
    return client.post(
        path,
        content=body,
        headers={"Authorization": f"Bearer {tokens[path]}", "Content-Type": CONTENT_TYPES[path]},
    )


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_the_real_example_is_accepted(api: tuple[TestClient, dict[str, str]], path: str) -> None:
    assert post(api, path, EXAMPLES[path]).status_code in (200, 201)


@pytest.mark.parametrize("path", sorted(EXAMPLES))
@FUZZ
@given(data=st.data())
def test_no_input_gets_a_500(
    api: tuple[TestClient, dict[str, str]], path: str, data: st.DataObject
) -> None:
    body = data.draw(
        st.one_of(
            st.binary(max_size=300),
            JSON_VALUES.map(lambda v: json.dumps(v).encode()),
            mutated(EXAMPLES[path]),
        )
    )
    resp = post(api, path, body)
    assert resp.status_code < 500, resp.text[:300]
    if resp.status_code >= 400 and path.startswith("/fhir"):
        assert resp.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=400), mutated(EXAMPLES["/fhir/Communication"])))
def test_r4_parser_raises_only_wijkbrug_errors(body: bytes) -> None:
    for content_type in ("application/fhir+json", "application/fhir+xml"):
        # Anything else than a WijkbrugError (a 4xx) escapes and fails the test.
        with contextlib.suppress(WijkbrugError):
            fhir_r4.parse_communication(body, content_type)
