"""schemathesis against the OpenAPI schema of the whole HTTP surface (issue 6, "Bad input,
at scale"): every operation gets schema-driven valid and invalid requests, each with a
valid credential for its path family, and every answer must be below 500 and, when it is
an error, in the shape of its family:

    /fhir/...                    a FHIR OperationOutcome (JSON, or XML when asked for XML)
    /admin/api/...               {"error": <code>, "message": <text>}
    /edifact                     {"error": <text>, "code": <code>, "status": <int>, "issues"}
    /_matrix/..., /_wijkbrug/... {"errcode": "M_...", "error": <text>} (Matrix style)
    anything else                {"error": <code>, "message": <text>}

Most handlers read their query parameters and bodies from the request themselves, so the
schema FastAPI publishes does not describe them; ``extend_schema`` adds them here (the same
names the handlers read; the directory's search parameters come from its own table), with
the real example messages as examples, so schemathesis fuzzes what the bridge really parses.
The number of cases run is printed per operation and in total.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response
from schemathesis.python.asgi import shutdown_lifespans

from adapters import fhir_r4
from bridge.canonical import CareType, Priority
from bridge.config import Settings, generate_config, load_settings
from bridge.runtime import open_store
from bridge.web import directory_fhir
from bridge.web.app import create_app
from tests.support.examples import message, region, render

AnyCase = Case[Any]  # schemathesis's own checks take a Case of any operation type

REPO = Path(__file__).resolve().parents[2]
R4_EXAMPLE = REPO / "fhir/examples/Communication-wondzorg-example.json"
STU3_EXAMPLE = REPO / "tests/data/stu3/Communication-wondzorg-practitioner.json"
EDIFACT_EXAMPLES = sorted((REPO / "tests/data/edifact").glob("*.edi"))
SHEET_EXAMPLE = REPO / "deploy/examples/amsterdam-oost-2027.csv"

# Per operation: at most this many fuzzed cases (explicit examples and schemathesis's
# coverage cases come on top). The whole run stays well under a minute on 2 cores.
MAX_EXAMPLES = 20
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

CASES: Counter[str] = Counter()  # operation label -> requests sent
STATUSES: Counter[tuple[str, str]] = Counter()  # (operation label, "2xx"/"4xx"/...) -> count
SPAN: list[float] = []  # monotonic times of the first and the latest case


# ---------------------------------------------------------------- bodies schemathesis cannot
# derive from a JSON schema: raw FHIR XML, EDIFACT interchanges, agreement sheets


@st.composite
def _mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """A real document with a few bytes changed, or cut short."""
    data = bytearray(original)
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _documents(originals: list[bytes]) -> st.SearchStrategy[bytes]:
    """The originals themselves, mutations of them, and arbitrary bytes or text."""
    return st.one_of(
        st.sampled_from(originals),
        st.sampled_from(originals).flatmap(_mutated),
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
    )


def register_media_types() -> None:
    r4_xml = fhir_r4.to_xml(json.loads(R4_EXAMPLE.read_bytes()))
    schemathesis.openapi.media_type("application/fhir+xml", _documents([r4_xml]))
    edifact = [p.read_bytes() for p in EDIFACT_EXAMPLES]
    schemathesis.openapi.media_type("application/edifact", _documents(edifact))
    sheet = SHEET_EXAMPLE.read_bytes()
    # The region's open-ended wondzorg routes overlap the sheet's; without them it imports.
    importable = b"".join(line for line in sheet.splitlines(True) if b"wondzorg" not in line)
    schemathesis.openapi.media_type("text/csv", _documents([sheet, importable]))


# ---------------------------------------------------------------- the schema, completed

STRING: dict[str, Any] = {"type": "string"}
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def _query(name: str, example: Any = None, *, array: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": STRING} if array else dict(STRING)
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if array:
        param["explode"] = True
    if example is not None:
        param["example"] = example
    return param


def _body(content: dict[str, dict[str, Any]], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": content}


def _json_object(properties: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"application/json": {"schema": schema, "example": example}}


def _add(
    spec: dict[str, Any],
    method: str,
    path: str,
    *,
    params: Sequence[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    path_examples: dict[str, Any] | None = None,
) -> None:
    operation = spec["paths"][path][method]
    operation.setdefault("parameters", []).extend(params)
    for param in operation["parameters"]:
        if param["in"] == "path" and path_examples and param["name"] in path_examples:
            param["example"] = path_examples[param["name"]]
    if body is not None:
        operation["requestBody"] = body


def extend_schema(published: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The published schema plus the query parameters and bodies the handlers read."""
    spec = copy.deepcopy(published)
    fmt = _query("_format", "xml")
    communication = {
        "type": "object",
        "properties": {
            "resourceType": {"type": "string", "enum": ["Communication"]},
            "identifier": {"type": "array", "items": {"type": "object"}},
            "status": STRING,
            "category": {"type": "array", "items": {"type": "object"}},
            "priority": STRING,
            "subject": {"type": "object"},
            "sender": {"type": "object"},
            "recipient": {"type": "array", "items": {"type": "object"}},
            "payload": {"type": "array", "items": {"type": "object"}},
            "contained": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["resourceType"],
    }
    examples = {"/fhir": R4_EXAMPLE, "/fhir/stu3": STU3_EXAMPLE}
    for prefix, example in examples.items():
        _add(spec, "get", f"{prefix}/metadata", params=[fmt])
        search = [
            _query("_lastUpdated", ["ge2026-01-01T00:00:00Z"], array=True),
            _query("_count", "2"),
            _query("_offset", "1"),
            _query("identifier", "urn:oid:2.16.528.1.1007.3.3.01234567.1|seed-1"),
            _query("status", "in-progress"),
            fmt,
        ]
        _add(spec, "get", f"{prefix}/Communication", params=search)
        content = {"schema": communication, "example": json.loads(example.read_bytes())}
        bodies = {"application/fhir+json": content}
        if prefix == "/fhir":
            bodies["application/fhir+xml"] = {"schema": BINARY}
        _add(spec, "post", f"{prefix}/Communication", params=[fmt], body=_body(bodies))
        _add(
            spec,
            "get",
            f"{prefix}/Communication/{{comm_id}}",
            params=[fmt],
            path_examples={"comm_id": ids["Communication"]},
        )
        _add(spec, "get", f"{prefix}/Binary/{{file_id}}", params=[fmt])
    if "/fhir/$process-message" in spec["paths"]:
        header_url, comm_url = (f"urn:uuid:6f1d2c1e-0000-4000-8000-00000000000{i}" for i in (1, 2))
        message_bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "message",
            "entry": [
                {
                    "fullUrl": header_url,
                    "resource": {
                        "resourceType": "MessageHeader",
                        "id": header_url.rsplit(":", 1)[1],
                        "eventCoding": {"code": "case-message"},
                        "source": {"endpoint": "https://his.example/fhir"},
                        "focus": [{"reference": comm_url}],
                    },
                },
                {"fullUrl": comm_url, "resource": json.loads(R4_EXAMPLE.read_bytes())},
            ],
        }
        bundle_schema = {
            "type": "object",
            "properties": {
                "resourceType": {"type": "string", "enum": ["Bundle"]},
                "type": {"type": "string", "enum": ["message", "transaction", "collection"]},
                "entry": {"type": "array", "items": {"type": "object"}, "maxItems": 4},
            },
            "required": ["resourceType"],
        }
        bodies = {
            "application/fhir+json": {"schema": bundle_schema, "example": message_bundle},
            "application/fhir+xml": {"schema": BINARY},
        }
        _add(spec, "post", "/fhir/$process-message", params=[fmt], body=_body(bodies))
    if "/fhir" in spec["paths"]:
        # POST [base]: a transaction Bundle (the message Bundle's entries, header left out).
        transaction_bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {**e, "request": {"method": "POST", "url": e["resource"]["resourceType"]}}
                for e in message_bundle["entry"][1:]
            ],
        }
        bodies = {
            "application/fhir+json": {"schema": bundle_schema, "example": transaction_bundle},
            "application/fhir+xml": {"schema": BINARY},
        }
        _add(spec, "post", "/fhir", params=[fmt], body=_body(bodies))
    for resource_type, known in directory_fhir.SEARCH_PARAMS.items():
        params = [_query("_count", "1"), _query("_offset", "0"), fmt]
        for name, param in known.items():
            params.append(_query(name))
            if param.kind == "string":
                params += [_query(f"{name}:contains"), _query(f"{name}:exact")]
        _add(spec, "get", f"/fhir/{resource_type}", params=params)
        _add(
            spec,
            "get",
            f"/fhir/{resource_type}/{{logical_id}}",
            params=[fmt],
            path_examples={"logical_id": ids[resource_type]},
        )
    _add(spec, "post", "/edifact", body=_body({"application/edifact": {"schema": BINARY}}))

    event = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["m.room.message", "m.room.member", "m.receipt"]},
            "event_id": STRING,
            "room_id": STRING,
            "sender": STRING,
            "state_key": STRING,
            "origin_server_ts": {"type": "integer"},
            "content": {"type": "object"},
        },
    }
    transaction = {
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": event, "maxItems": 5},
            "ephemeral": {"type": "array", "items": {"type": "object"}, "maxItems": 3},
        },
        "required": ["events"],
    }
    txn_example = {
        "events": [
            {
                "type": "m.room.message",
                "event_id": "$fuzz-1",
                "room_id": "!room:localhost",
                "sender": "@nurse1:localhost",
                "origin_server_ts": 1767225600000,
                "content": {"msgtype": "m.text", "body": "!help"},
            }
        ],
        "ephemeral": [],
    }
    _add(
        spec,
        "put",
        "/_matrix/app/v1/transactions/{txn_id}",
        body=_body({"application/json": {"schema": transaction, "example": txn_example}}),
    )
    ping = {"type": "object", "properties": {"transaction_id": STRING}}
    _add(spec, "post", "/_matrix/app/v1/ping", body=_body({"application/json": {"schema": ping}}))

    care_types = [c.value for c in CareType]
    _add(
        spec,
        "get",
        "/admin/api/coverage",
        params=[_query("at", "2026-06-01"), _query("pc4", ["1091-1098"], array=True)],
    )
    for listing in ("decisions", "escalations", "changes"):
        _add(spec, "get", f"/admin/api/{listing}", params=[_query("limit", "10")])
    explain = [
        _query("care_type", care_types[0]),
        _query("postcode", "1092 AB"),
        _query("priority", Priority.ROUTINE.value),
        _query("at", "2026-06-01T10:00:00+01:00"),
    ]
    _add(spec, "get", "/admin/api/explain", params=explain)
    texts = {"type": "array", "items": STRING}
    route = _json_object(
        {
            "care_type": STRING,
            "pc4": STRING,
            "wijk": STRING,
            "provider": STRING,
            "rank": {"type": ["integer", "string"]},
            "valid_from": STRING,
            "valid_to": STRING,
        },
        {"care_type": care_types[0], "pc4": "1011-1018", "provider": "12345678", "rank": 2},
    )
    _add(spec, "post", "/admin/api/routes", body=_body(route))
    full = _json_object(
        {p: STRING for p in ("provider", "team", "care_type", "from", "until", "note")},
        {"provider": "12345678", "until": "2026-12-31", "note": "vol"},
    )
    _add(spec, "post", "/admin/api/availability", body=_body(full))
    team = _json_object(
        {"provider": STRING, "name": STRING, "members": texts, "care_types": texts, "pc4": texts},
        {"provider": "12345678", "name": "Team Oost", "members": ["@nurse3:localhost"]},
    )
    _add(spec, "post", "/admin/api/teams", body=_body(team))
    _add(spec, "post", "/admin/api/routes/import", body=_body({"text/csv": {"schema": BINARY}}))
    _add(spec, "delete", "/admin/api/routes/{route_id}", path_examples={"route_id": "1"})
    _add(spec, "delete", "/admin/api/availability/{block_id}", path_examples={"block_id": "1"})
    return spec


# ---------------------------------------------------------------- the app under test


def seed(settings_: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """A region with a stored communication; returns (tokens by family, example ids)."""
    store = open_store(settings_)
    try:
        region(store)
        store.add_route(CareType.WONDZORG, 1071, 1079, "12345678")  # the examples' area
        # What the example agreement sheet names, so that it can be imported.
        store.add_org("provider", "Buurtzorg Centrum", agb=None, ura="87654321")
        store.add_wijk("Watergraafsmeer", [(1091, 1098)])
        store.add_wijk("De Pijp", [(1071, 1079)])
        store.add_practitioner("01234567", "A. Jansen", agb="01000001", matrix_id="@dr:localhost")
        practice = store.find_org("01234567")
        decision = store.decide(CareType.WONDZORG, "1092AB")
        stored, _ = store.accept_message(practice, message("seed-1"), decision, render)
        tokens = {
            "r4": store.add_client("01234567", "his-r4")[1],
            "stu3": store.add_client("01234567", "his-stu3", "fhir-stu3")[1],
            "edifact": store.add_client("01234567", "his-edi", "edifact-medvri")[1],
            "admin": store.add_admin_token("fuzz", "region-admin")[1],
            "hs": settings_.secret("hs_token"),
        }
        ids = {"Communication": stored.id}
        for resource_type in directory_fhir.SEARCH_PARAMS:
            found = directory_fhir.search_resources(store, resource_type, [])
            ids[resource_type] = found[0]["id"]
        return tokens, ids
    finally:
        store.engine.dispose()


@pytest.fixture(scope="module")
def tokens_and_schema(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[dict[str, str], schemathesis.BaseSchema]]:
    base = load_settings(generate_config(tmp_path_factory.mktemp("schemathesis")))
    # No rate limit: a 429 would hide the real answer to the request it refused.
    settings_ = base.model_copy(
        update={"http": base.http.model_copy(update={"client_rate_limit": None})}
    )
    tokens, ids = seed(settings_)
    app = create_app(settings_, run_bridge=False)
    app.openapi_schema = extend_schema(app.openapi(), ids)  # what /openapi.json serves
    register_media_types()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    try:
        yield tokens, schema
    finally:
        shutdown_lifespans()
        # The figures belong in every test log (issue 6), not only in runs with -s.
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            report(SPAN[-1] - SPAN[0] if SPAN else 0.0)


@pytest.fixture(scope="module")
def schema(
    tokens_and_schema: tuple[dict[str, str], schemathesis.BaseSchema],
) -> schemathesis.BaseSchema:
    return tokens_and_schema[1]


@pytest.fixture(scope="module")
def tokens(tokens_and_schema: tuple[dict[str, str], schemathesis.BaseSchema]) -> dict[str, str]:
    return tokens_and_schema[0]


def tick() -> None:
    """Keep the time of the first case and of the latest one."""
    now = time.monotonic()
    SPAN[:] = [SPAN[0] if SPAN else now, now]


def report(seconds: float) -> None:
    lines = ["", f"schemathesis: cases per operation ({MAX_EXAMPLES} fuzzed at most, plus"]
    lines.append("examples and coverage cases; status classes in brackets)")
    for label in sorted(CASES):
        classes = ", ".join(
            f"{cls} {STATUSES[label, cls]}"
            for cls in ("2xx", "3xx", "4xx", "5xx")
            if STATUSES[label, cls]
        )
        lines.append(f"  {CASES[label]:5d}  {label}  [{classes}]")
    total = sum(CASES.values())
    lines.append(f"schemathesis: {total} cases over {len(CASES)} operations in {seconds:.1f} s")
    print("\n".join(lines))


# ---------------------------------------------------------------- checks


def family(path: str) -> str:
    if path.startswith("/fhir"):
        return "fhir"
    if path.startswith("/admin/api"):
        return "admin"
    if path.startswith(("/_matrix/", "/_wijkbrug/")):
        return "matrix"
    if path == "/edifact":
        return "edifact"
    return "other"


def credential(path: str, tokens: dict[str, str]) -> str | None:
    kind = {
        "admin": "admin",
        "matrix": "hs",
        "edifact": "edifact",
        "fhir": "stu3" if path.startswith("/fhir/stu3") else "r4",
    }.get(family(path))
    return tokens[kind] if kind else None


def no_server_error(ctx: CheckContext, response: Response, case: AnyCase) -> bool | None:
    """Nothing a client sends gets a 5xx. (/readyz answers 503 by contract while the
    homeserver is not reached, which it never is in this test.)"""
    if case.operation.path == "/readyz" and response.status_code == 503:
        assert response.json()["status"] == "unavailable"
        return None
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    return None


def error_shape(ctx: CheckContext, response: Response, case: AnyCase) -> bool | None:
    """Every 4xx explains itself in its path family's error shape."""
    if not 400 <= response.status_code < 500:
        return None
    where = family(case.operation.path)
    content_type = response.headers.get("content-type", [""])[0]
    if where == "fhir" and content_type.startswith(fhir_r4.FHIR_XML):
        assert "<OperationOutcome" in response.text, response.text[:500]
        return None
    body = response.json()
    assert isinstance(body, dict), body
    if where in ("edifact", "matrix") and set(body) == {"error", "message"}:
        # The app's own answer before any handler ran: no such route or method.
        assert response.status_code in (404, 405), body
        where = "other"
    if where == "fhir":
        assert body.get("resourceType") == "OperationOutcome", body
        assert body.get("issue"), body
    elif where == "edifact":
        assert isinstance(body.get("error"), str) and isinstance(body.get("code"), str), body
        assert body.get("status") == response.status_code and body.get("issues"), body
    elif where == "matrix":
        assert str(body.get("errcode")).startswith("M_"), body
        assert isinstance(body.get("error"), str), body
    else:
        # The admin API, and everything else outside /fhir.
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    return None


# ---------------------------------------------------------------- the test

lazy = schemathesis.pytest.from_fixture("schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's ``from_fixture`` reads and renames ``Node._nodeid`` to label
    each operation's subtest; pytest 9.2 keeps the id elsewhere (``Node._id``), so give it
    the attribute it expects (only the labels of the subtests depend on it)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@lazy.parametrize()
@FUZZ
def test_every_operation_answers_below_500_in_its_error_shape(
    case: AnyCase, tokens: dict[str, str]
) -> None:
    token = credential(case.operation.path, tokens)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tick()
    response = case.call(headers=headers)
    tick()
    CASES[case.operation.label] += 1
    STATUSES[case.operation.label, f"{response.status_code // 100}xx"] += 1
    case.validate_response(response, checks=[no_server_error, error_shape])


# ---------------------------------------------------------------- bugs it found, kept as cases
# (each was a 500; fixed: error texts made printable for XML, the sheet parser reads any
# line ending and refuses extra columns, a NUL is refused before the database)

HEADER = "care_type,pc4_from,pc4_to_or_wijk,provider_ura,rank,valid_from,valid_to"
ROW = "wondzorg,1091,1098,12345678,1,2027-01-01,2028-01-01"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Another app (exceptions become 500 answers, as in production), a token per family."""
    settings_ = load_settings(generate_config(tmp_path_factory.mktemp("bugs")))
    with TestClient(create_app(settings_, run_bridge=False), raise_server_exceptions=False) as c:
        store = c.app.state.bridge.store  # type: ignore[attr-defined]
        region(store)
        tokens = {
            "r4": store.add_client("01234567", "his-r4")[1],
            "stu3": store.add_client("01234567", "his-stu3", "fhir-stu3")[1],
            "admin": store.add_admin_token("fuzz", "region-admin")[1],
        }
        yield c, tokens


@pytest.mark.parametrize(
    ("url", "family_", "headers"),
    [
        # schemathesis found these with a generated id of "\x1f" and _format=xml.
        pytest.param("/fhir/Communication/%1F?_format=xml", "r4", {}, id="r4-read"),
        pytest.param("/fhir/stu3/Communication/a%00b?_format=xml", "stu3", {}, id="stu3-read"),
        pytest.param(
            "/fhir/Communication/%1F", "r4", {"Accept": "application/fhir+xml"}, id="accept"
        ),
        pytest.param("/fhir/Communication?%1F=x&_format=xml", "r4", {}, id="r4-search"),
        pytest.param("/fhir/Organization?%1F=x&_format=xml", "r4", {}, id="directory-search"),
    ],
)
def test_an_xml_error_echoing_a_control_character_is_not_a_500(
    fresh: tuple[TestClient, dict[str, str]], url: str, family_: str, headers: dict[str, str]
) -> None:
    client, tokens = fresh
    resp = client.get(url, headers={"Authorization": f"Bearer {tokens[family_]}", **headers})
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith(fhir_r4.FHIR_XML), resp.text
    assert "<OperationOutcome" in resp.text


@pytest.mark.parametrize(
    "sheet",
    [
        # Classic-Mac line endings (bare CR), as "CSV (Macintosh)" exports write them;
        # schemathesis found it with a CR in place of a byte of the example sheet.
        pytest.param(f"{HEADER}\r{ROW}\r", id="bare-cr-line-endings"),
        pytest.param(f"{HEADER}\n\r{ROW}\n", id="stray-cr-at-line-start"),
        # One field over csv's field_size_limit (131072 characters); the body may be 5 MB.
        pytest.param(
            f"{HEADER}\n{'x' * 140_000}{ROW.removeprefix('wondzorg')}\n",
            id="field-over-128k",
        ),
        # schemathesis found it with a NUL in place of a newline (two rows became one).
        pytest.param(f"{HEADER}\n{ROW},\n", id="trailing-comma"),
        pytest.param(f"{HEADER}\n{ROW},zie mail\n", id="extra-column"),
    ],
)
def test_a_malformed_agreement_sheet_gets_a_400_not_a_500(
    fresh: tuple[TestClient, dict[str, str]], sheet: str
) -> None:
    client, tokens = fresh
    resp = client.post(
        "/admin/api/routes/import",
        content=sheet.encode(),
        headers={"Authorization": f"Bearer {tokens['admin']}", "Content-Type": "text/csv"},
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert {"error", "message"} <= set(resp.json())


@pytest.mark.parametrize(
    ("method", "url", "family_", "body"),
    [
        pytest.param("GET", "/fhir/Communication/a%00b", "r4", None, id="fhir-read"),
        pytest.param("GET", "/fhir/Communication?identifier=a%00b", "r4", None, id="fhir-search"),
        pytest.param("GET", "/fhir/Binary/a%00b", "r4", None, id="fhir-binary"),
        pytest.param(
            "PUT",
            "/_matrix/app/v1/transactions/t1",
            "hs",
            {"events": [{"event_id": "$a\u0000b", "type": "m.room.message"}]},
            id="appservice-event-id",
        ),
        pytest.param("GET", "/_wijkbrug/policy/v1/users/@a%00b:localhost", "hs", None, id="policy"),
        pytest.param(
            "POST",
            "/admin/api/teams",
            "admin",
            {"provider": "12345678", "name": "T\u0000"},
            id="team",
        ),
    ],
)
def test_a_nul_character_gets_a_4xx_on_postgresql(
    tmp_path: Path,
    postgres_url: str,
    method: str,
    url: str,
    family_: str,
    body: dict[str, Any] | None,
) -> None:
    settings_ = load_settings(generate_config(tmp_path, database_url=postgres_url))
    with TestClient(create_app(settings_, run_bridge=False), raise_server_exceptions=False) as c:
        store = c.app.state.bridge.store  # type: ignore[attr-defined]
        region(store)
        tokens = {
            "r4": store.add_client("01234567", "his-r4")[1],
            "admin": store.add_admin_token("fuzz", "region-admin")[1],
            "hs": settings_.secret("hs_token"),
        }
        resp = c.request(
            method,
            url,
            content=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {tokens[family_]}"},
        )
    assert 400 <= resp.status_code < 500, resp.text
