"""Files in a case: the allow-list (by what the bytes are, not what they claim), encrypted
attachments as Matrix carries them, and a file in each dialect: read from a practice's
FHIR message, refused with where and why, served as a Binary, and written into a reply."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.communication import Communication as R4Communication

from adapters import edifact_medvri, fhir_r4
from bridge import files
from bridge.canonical import Attachment, CareType, Party, Reply
from bridge.config import FilesSection, generate_config, load_settings
from bridge.errors import WijkbrugError
from bridge.service import Bridge
from bridge.web.app import create_app
from tests.support.examples import region

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
POLICY = FilesSection()


def test_the_bytes_decide_the_type_and_the_region_the_allow_list() -> None:
    assert files.problem(POLICY, "image/png", PNG) is None
    assert files.problem(POLICY, None, PDF) is None  # nothing declared: the bytes say PDF
    lying = files.problem(POLICY, "image/png", PDF)
    assert lying is not None and "application/pdf" in lying
    assert "not allowed" in str(files.problem(POLICY, "text/html", b"<html><script>"))
    assert "not allowed" in str(files.problem(POLICY, None, b"MZ\x90\x00" + b"\x00" * 60))
    small = FilesSection(max_bytes=100)
    assert "at most 100" in str(files.problem(small, "image/png", PNG))
    assert files.problem(POLICY, "image/png", b"") == "the file is empty"
    assert files.allowed_text(POLICY) == "JPEG, PNG en PDF tot 7 MB"


def test_encrypted_attachments_round_trip_and_a_wrong_hash_is_refused() -> None:
    ciphertext, info = files.encrypt_for_room(PNG)
    assert PNG not in ciphertext and info["key"]["alg"] == "A256CTR"
    assert files.decrypt_from_room(ciphertext, info) == PNG
    with pytest.raises(files.FileError, match="hash"):
        files.decrypt_from_room(ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), info)
    with pytest.raises(files.FileError, match="cannot be opened"):
        files.decrypt_from_room(ciphertext, {"iv": info["iv"]})
    att = files.attachment("wond.png", PNG, "image/png")
    content = files.room_content(att, {**info, "url": "mxc://localhost/abc"})
    assert content["msgtype"] == "m.image" and "url" not in content
    assert content["file"]["url"] == "mxc://localhost/abc"
    assert content["info"] == {"mimetype": "image/png", "size": len(PNG)}
    assert files.media_id("mxc://localhost/abc") == ("localhost", "abc")
    for bad in ("https://example.org/x", "mxc://localhost", "mxc:///abc", "mxc://a/b/c"):
        with pytest.raises(files.FileError):
            files.media_id(bad)


def with_file(data: bytes = PNG, **attachment: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        (REPO / "fhir/examples/Communication-wondzorg-example.json").read_text()
    )
    fields = {
        "contentType": "image/png",
        "data": base64.b64encode(data).decode(),
        "title": "wond-links.png",
        **attachment,
    }
    body["payload"].append({"contentAttachment": {k: v for k, v in fields.items() if v}})
    return body


def parse(body: dict[str, Any]) -> Any:
    return fhir_r4.parse_communication(json.dumps(body).encode(), "application/fhir+json")


def test_a_practice_message_carries_its_files() -> None:
    sha1 = base64.b64encode(hashlib.sha1(PNG, usedforsecurity=False).digest()).decode()
    msg = parse(with_file(size=len(PNG), hash=sha1))
    (att,) = msg.attachments
    assert (att.content_type, att.title, att.size) == ("image/png", "wond-links.png", len(PNG))
    assert att.data == PNG and att.sha256 == hashlib.sha256(PNG).hexdigest()
    assert att.where == "Communication.payload[1].contentAttachment"
    linked = files.link_attachments(
        msg.resource, (Attachment(**{**att.__dict__, "id": "f1"}),), "https://wb/fhir"
    )
    stored = linked["payload"][1]["contentAttachment"]
    assert "data" not in stored and stored["url"] == "https://wb/fhir/Binary/f1"
    assert "data" in msg.resource["payload"][1]["contentAttachment"]  # input left as it was


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"data": None, "url": "https://his.example/x.png"}, "contentAttachment.data", "url"),
        ({"data": "not base64!"}, "contentAttachment.data", "base64"),
        ({"contentType": None}, "contentAttachment.contentType", "contentType"),
        ({"size": 3}, "contentAttachment.size", "holds"),
        ({"hash": base64.b64encode(b"x" * 20).decode()}, "contentAttachment.hash", "SHA-1"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_with_where_and_why(
    change: dict[str, Any], where: str, words: str
) -> None:
    body = with_file()
    attachment = body["payload"][1]["contentAttachment"]
    for key, value in change.items():
        if value is None:
            attachment.pop(key, None)
        else:
            attachment[key] = value
    with pytest.raises(WijkbrugError) as caught:
        parse(body)
    issues = caught.value.all_issues()
    assert [i.expression for i in issues] == [f"Communication.payload[1].{where}"]
    assert words in issues[0].diagnostics


def reply(*attachments: Attachment) -> Reply:
    return Reply(
        id="r1",
        in_response_to="m1",
        case_number="WB-000001",
        care_type=CareType.WONDZORG,
        sender=Party(name="Anna de Wit", organisation_name="Thuiszorg Oost"),
        text="Bijlage: wond.png",
        sent=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        attachments=attachments,
    )


def test_a_reply_links_its_files_in_every_dialect() -> None:
    att = Attachment("image/png", "wond.png", len(PNG), hashlib.sha256(PNG).hexdigest(), "f9")
    out = fhir_r4.render_reply(reply(att), last_updated=att_time(), files_base="https://wb/fhir")
    R4Communication.model_validate(out)
    assert out["payload"][1]["contentAttachment"] == {
        "contentType": "image/png",
        "url": "https://wb/fhir/Binary/f9",
        "size": len(PNG),
        "title": "wond.png",
    }
    letter = edifact_medvri.render_reply(
        reply(att),
        sender_id="12345678",
        recipient_agb="01234567",
        control_ref="R1",
        now=att_time(),
        files_base="https://wb/fhir",
    ).decode("latin-1")
    assert "Bijlage" in letter and "https?://wb/fhir/Binary/f9" in letter.replace("\n", "")


def att_time() -> datetime:
    return datetime(2026, 11, 25, 10, 5, tzinfo=UTC)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    settings = load_settings(generate_config(tmp_path))
    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        _, token = bridge.store.add_client("01234567", "his")
        _, other = bridge.store.add_client("01234568", "other")
        yield client, token, other


def test_a_posted_file_is_stored_once_and_served_to_its_organisations_only(
    api: tuple[TestClient, str, str],
) -> None:
    client, token, other = api
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    posted = client.post("/fhir/Communication", content=json.dumps(with_file()), headers=headers)
    assert posted.status_code == 201, posted.text
    link = posted.json()["payload"][1]["contentAttachment"]
    assert "data" not in link and link["contentType"] == "image/png"
    path = link["url"].split("127.0.0.1:8080", 1)[1]
    raw = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert raw.status_code == 200 and raw.content == PNG
    assert raw.headers["content-type"] == "image/png"
    assert raw.headers["x-content-type-options"] == "nosniff"
    binary = client.get(
        path, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    )
    assert binary.json()["resourceType"] == "Binary"
    assert base64.b64decode(binary.json()["data"]) == PNG
    elsewhere = client.get(path, headers={"Authorization": f"Bearer {other}"})
    assert elsewhere.status_code == 404  # another practice does not even learn it exists
    assert elsewhere.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("data", "declared", "status", "words"),
    [
        (PDF, "image/png", 400, "contents are application/pdf"),
        (b"<html><script>alert(1)</script></html>", "text/html", 400, "not allowed"),
        (PNG + b"\x00" * (7 * 1024 * 1024), "image/png", 413, "at most"),
    ],
)
def test_a_file_the_region_does_not_allow_refuses_the_message(
    api: tuple[TestClient, str, str], data: bytes, declared: str, status: int, words: str
) -> None:
    client, token, _ = api
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    body = with_file(data, contentType=declared)
    resp = client.post("/fhir/Communication", content=json.dumps(body), headers=headers)
    assert resp.status_code == status, resp.text
    (issue,) = resp.json()["issue"]
    assert issue["expression"] == ["Communication.payload[1].contentAttachment"]
    assert words in issue["diagnostics"]
    search = client.get("/fhir/Communication", headers={"Authorization": f"Bearer {token}"})
    assert search.json()["total"] == 0  # nothing half-stored
