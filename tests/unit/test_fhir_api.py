"""The FHIR facade without a homeserver: auth, search parameters, paging, OperationOutcomes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bridge.canonical import CareType
from bridge.config import generate_config, load_settings
from bridge.errors import WijkbrugError
from bridge.observability import REQUEST_ID, configure_logging
from bridge.service import Bridge
from bridge.web.app import create_app
from bridge.web.deps import message_body_limit
from tests.support.examples import message, region

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Bridge, str, str]]:
    settings = load_settings(generate_config(tmp_path))
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        _, token = bridge.store.add_client("01234567", "his")
        _, other = bridge.store.add_client("01234568", "other")
        yield client, bridge, token, other


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(bridge: Bridge, n: int) -> list[str]:
    practice = bridge.store.find_org("01234567")
    decision = bridge.store.decide(CareType.WONDZORG, "1092AB")

    def render(comm_id: str, number: str, now: datetime) -> dict[str, Any]:
        return {
            "resourceType": "Communication",
            "id": comm_id,
            "status": "in-progress",
            "meta": {"versionId": "1", "lastUpdated": now.isoformat()},
        }

    return [
        bridge.store.accept_message(practice, message(f"m{i}"), decision, render)[0].id
        for i in range(n)
    ]


def test_search_pages_with_next_links(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, bridge, token, _ = api
    ids = seed(bridge, 5)
    seen: list[str] = []
    url: str | None = "/fhir/Communication?_count=2"
    while url:
        resp = client.get(url, headers=auth(token))
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/fhir+json")
        bundle = resp.json()
        assert bundle["type"] == "searchset" and bundle["total"] == 5
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].split("127.0.0.1:8080", 1)[1] if nxt else None
    assert seen == ids


def test_search_filters(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, bridge, token, other = api
    seed(bridge, 2)
    by_id = client.get(
        "/fhir/Communication",
        params={"identifier": "urn:oid:2.16.528.1.1007.3.3.01234567.1|m1"},
        headers=auth(token),
    )
    assert by_id.json()["total"] == 1
    assert client.get("/fhir/Communication?identifier=m0", headers=auth(token)).json()["total"] == 1
    status = client.get("/fhir/Communication?status=completed", headers=auth(token))
    assert status.json()["total"] == 0
    future = client.get("/fhir/Communication?_lastUpdated=gt2999-01-01", headers=auth(token))
    assert future.json()["total"] == 0
    past = client.get(
        "/fhir/Communication?_lastUpdated=ge2000-01-01T00:00:00Z", headers=auth(token)
    )
    assert past.json()["total"] == 2
    assert client.get("/fhir/Communication", headers=auth(other)).json()["total"] == 0


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("_count=0", "_count"),
        ("_count=abc", "_count"),
        ("_count=%C2%B2", "_count"),
        ("_lastUpdated=yesterday", "_lastUpdated"),
        ("_lastUpdated=gt2026-13-45", "_lastUpdated"),
        ("subject=Patient/1", "subject"),
    ],
)
def test_bad_search_parameters_say_where(
    api: tuple[TestClient, Bridge, str, str], query: str, where: str
) -> None:
    client, _, token, _ = api
    resp = client.get(f"/fhir/Communication?{query}", headers=auth(token))
    assert 400 <= resp.status_code < 500
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [where]


def test_read_is_scoped_to_the_tokens_organisation(
    api: tuple[TestClient, Bridge, str, str],
) -> None:
    client, bridge, token, other = api
    (comm_id,) = seed(bridge, 1)
    mine = client.get(f"/fhir/Communication/{comm_id}", headers=auth(token))
    assert mine.status_code == 200 and mine.headers["etag"] == 'W/"1"'
    theirs = client.get(f"/fhir/Communication/{comm_id}", headers=auth(other))
    assert theirs.status_code == 404 and theirs.json()["resourceType"] == "OperationOutcome"


def test_authentication_errors(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, _, _, _ = api
    for headers in ({}, {"Authorization": "Basic abc"}, auth("wbt_unknown")):
        resp = client.get("/fhir/Communication", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["issue"][0]["code"] == "login"


def test_a_provider_token_answers_but_cannot_start_a_case(
    api: tuple[TestClient, Bridge, str, str],
) -> None:
    """A provider's ECD posts answers (inResponseTo a practice's message); a message that
    would start a case is refused, saying what an answer needs."""
    client, bridge, _, _ = api
    _, provider_token = bridge.store.add_client("12345678", "ecd")
    example = (REPO / "fhir/examples/Communication-wondzorg-example.json").read_bytes()
    resp = client.post(
        "/fhir/Communication",
        content=example,
        headers=auth(provider_token) | {"Content-Type": "application/fhir+json"},
    )
    assert resp.status_code == 400
    assert ["Communication.inResponseTo"] in [i["expression"] for i in resp.json()["issue"]]
    bridge.store.add_org("hap", "HAP Amsterdam", agb="01999999", ura=None)
    _, hap_token = bridge.store.add_client("01999999", "hap-his")
    hap = client.post("/fhir/Communication", content=example, headers=auth(hap_token))
    assert hap.status_code == 403 and hap.json()["issue"][0]["code"] == "forbidden"


def test_unknown_fhir_path_and_method(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, _, token, _ = api
    missing = client.get("/fhir/Patient/1", headers=auth(token))
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    wrong = client.delete("/fhir/Communication/1", headers=auth(token))
    assert wrong.status_code == 405 and wrong.json()["resourceType"] == "OperationOutcome"


def test_metadata_and_health(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, bridge, _, _ = api
    meta = client.get("/fhir/metadata")
    assert meta.status_code == 200 and meta.json()["resourceType"] == "CapabilityStatement"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 503  # no homeserver in this test
    metrics = client.get("/metrics").text
    assert "wijkbrug_outbox_depth 0.0" in metrics
    for idle in ("outbox_oldest_age_seconds", "outbox_failed", "push_depth", "undecryptable"):
        assert f"wijkbrug_{idle} 0.0" in metrics
    seed(bridge, 1)  # a message waiting for its room
    waiting = client.get("/metrics").text
    assert "wijkbrug_outbox_depth 1.0" in waiting
    age = re.search(r"^wijkbrug_outbox_oldest_age_seconds (\S+)$", waiting, re.MULTILINE)
    assert age is not None and float(age.group(1)) > 0


def test_oversized_body_is_refused(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, bridge, token, _ = api
    limit = message_body_limit(bridge)  # a message and its largest allowed files
    assert limit > bridge.settings.files.max_bytes * 4 // 3
    resp = client.post("/fhir/Communication", content=b" " * (limit + 1), headers=auth(token))
    assert resp.status_code == 413 and resp.json()["resourceType"] == "OperationOutcome"

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/fhir/Communication", content=chunks(), headers=auth(token))
    assert streamed.status_code == 413


def test_xml_when_asked_for_errors_included(api: tuple[TestClient, Bridge, str, str]) -> None:
    client, bridge, token, _ = api
    (comm_id,) = seed(bridge, 1)
    meta = client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert meta.headers["content-type"].startswith("application/fhir+xml")
    assert "<CapabilityStatement " in meta.text and 'value="4.0.1"' in meta.text
    read = client.get(f"/fhir/Communication/{comm_id}?_format=xml", headers=auth(token))
    assert read.status_code == 200 and "<Communication " in read.text
    assert f'<id value="{comm_id}"/>' in read.text
    denied = client.get("/fhir/Communication?_format=xml")
    assert denied.status_code == 401 and "<OperationOutcome " in denied.text
    plain = client.get(f"/fhir/Communication/{comm_id}", headers=auth(token))
    assert plain.json()["id"] == comm_id


def test_a_recipient_chosen_by_the_sender_is_honoured(
    api: tuple[TestClient, Bridge, str, str],
) -> None:
    client, bridge, token, _ = api
    bridge.store.add_org("provider", "Buurtzorg Centrum", agb=None, ura="87654321")
    bridge.store.add_team("87654321", "Centrum", ["@n9:localhost"])
    example = json.loads(
        (REPO / "fhir" / "examples" / "Communication-wondzorg-example.json").read_text()
    )

    def post(ura: str, ident: str) -> Any:
        body = {
            **example,
            "identifier": [{"system": "urn:oid:2.16.528.1.1007.3.3.01234567.1", "value": ident}],
            "recipient": [
                {
                    "identifier": {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": ura},
                    "display": "gekozen aanbieder",
                }
            ],
        }
        return client.post(
            "/fhir/Communication",
            content=json.dumps(body),
            headers={**auth(token), "Content-Type": "application/fhir+json"},
        )

    chosen = post("87654321", "r-1")  # not the preferred provider of 1092, but chosen
    assert chosen.status_code == 201, chosen.text
    decision = bridge.store.recent_decisions(1)[0]
    assert decision["provider"] == "Buurtzorg Centrum"
    assert "the sender chose Buurtzorg Centrum" in decision["reasons"][0]
    unknown = post("11111111", "r-2")
    assert unknown.status_code == 422
    assert unknown.json()["issue"][0]["expression"] == ["Communication.recipient"]


def test_a_client_over_its_rate_limit_is_told_when_to_come_back(tmp_path: Path) -> None:
    base = load_settings(generate_config(tmp_path))
    http = base.http.model_copy(update={"client_rate_limit": "3/minute"})
    settings = base.model_copy(update={"http": http})
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        _, busy = bridge.store.add_client("01234567", "busy")
        _, calm = bridge.store.add_client("01234568", "calm")
        answers = [client.get("/fhir/Communication", headers=auth(busy)) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        assert refused.json()["issue"][0]["code"] == "throttled"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another practice's client has its own window.
        assert client.get("/fhir/Communication", headers=auth(calm)).status_code == 200


def test_an_expired_token_says_so_and_a_renewed_one_works(
    api: tuple[TestClient, Bridge, str, str],
) -> None:
    client, bridge, _, _ = api
    past = datetime.now(UTC) - timedelta(days=1)
    client_id, old = bridge.store.add_client("01234567", "his-2026", expires_at=past)
    expired = client.get("/fhir/Communication", headers=auth(old))
    assert expired.status_code == 401
    assert "expired on" in expired.json()["issue"][0]["diagnostics"]
    new = bridge.store.renew_client_token(client_id, datetime.now(UTC) + timedelta(days=30))
    assert client.get("/fhir/Communication", headers=auth(new)).status_code == 200
    assert client.get("/fhir/Communication", headers=auth(old)).status_code == 401
    assert any(e.action == "admin.client.renew" for e in bridge.store.audit_entries())


def test_a_client_bound_to_a_certificate_needs_it_through_the_proxy(tmp_path: Path) -> None:
    """The header contract of mTLS at the proxy: the proxy verifies the certificate and
    passes its SHA-256 fingerprint in the configured header (stripping any a client sent);
    a client registered with a fingerprint is refused without the matching one."""
    base = load_settings(generate_config(tmp_path))
    http = base.http.model_copy(update={"client_certificate_header": "X-Client-Cert-SHA256"})
    settings = base.model_copy(update={"http": http})
    fingerprint = "AB:" * 31 + "CD"  # as openssl prints it
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        _, bound = bridge.store.add_client("01234567", "his", cert_sha256=fingerprint)
        _, plain = bridge.store.add_client("01234568", "other")
        with pytest.raises(WijkbrugError):
            bridge.store.add_client("01234567", "bad", cert_sha256="not-a-fingerprint")
        cert = {"X-Client-Cert-SHA256": ("ab" * 31 + "cd")}
        assert client.get("/fhir/Communication", headers=auth(bound) | cert).status_code == 200
        missing = client.get("/fhir/Communication", headers=auth(bound))
        assert missing.status_code == 401 and "certificate" in missing.text
        wrong = {"X-Client-Cert-SHA256": "00" * 32}
        assert client.get("/fhir/Communication", headers=auth(bound) | wrong).status_code == 401
        # A client without a fingerprint keeps working with its token alone.
        assert client.get("/fhir/Communication", headers=auth(plain)).status_code == 200


def test_requests_carry_an_id_and_are_counted_per_dialect(
    api: tuple[TestClient, Bridge, str, str],
) -> None:
    client, _, token, _ = api
    mine = client.get("/fhir/Communication", headers=auth(token) | {"X-Request-ID": "his-42"})
    assert mine.headers["x-request-id"] == "his-42"  # a practice can trace its own call
    odd = client.get("/fhir/Communication", headers=auth(token) | {"X-Request-ID": "a b\x7f"})
    assert odd.headers["x-request-id"] != "a b\x7f" and len(odd.headers["x-request-id"]) == 32
    client.get("/fhir/stu3/metadata")
    metrics = client.get("/metrics").text
    counted = re.search(
        r'^wijkbrug_http_requests_total\{status="2xx",surface="fhir-r4"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    assert counted is not None and float(counted.group(1)) >= 2
    assert 'surface="fhir-stu3"' in metrics
    assert "wijkbrug_delivery_seconds_bucket" in metrics


def test_a_nul_in_the_query_is_refused_before_any_database_in_the_asked_format(
    api: tuple[TestClient, Bridge, str, str],
) -> None:
    client, _, token, _ = api
    for url, wanted in (
        ("/fhir/Communication?identifier=a%00b", "application/fhir+json"),
        ("/fhir/Communication?identifier=a%00b&_format=xml", "application/fhir+xml"),
        ("/fhir/Communication/a%00b", "application/fhir+json"),
    ):
        resp = client.get(url, headers=auth(token) | {"X-Request-ID": "his-43"})
        assert resp.status_code == 400, (url, resp.text)
        assert resp.headers["content-type"].startswith(wanted)
        assert "NUL character" in resp.text and resp.headers["x-request-id"] == "his-43"


def test_json_log_lines_carry_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(verbose=False, json_lines=True)
    try:
        token = REQUEST_ID.set("req-7")
        logging.getLogger("bridge.test").info("delivered communication %s", "c-1")
        REQUEST_ID.reset(token)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["request_id"] == "req-7" and line["level"] == "INFO"
        assert line["message"] == "delivered communication c-1" and "time" in line
    finally:
        configure_logging(verbose=False, json_lines=False)
