"""The spine, on real parts: a GP's FHIR message reaches the preferred provider's nurse in
an encrypted Matrix room (read by matrix-js-sdk with Rust crypto), and her reply comes
back to the practice system through FHIR search.

    practice HIS --POST /fhir/Communication--> wijkbrug serve --> Synapse --> js client
    js client --reply--> Synapse --AS txn--> wijkbrug --GET /fhir/Communication--> HIS
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.bridge import BridgeSite
from tests.support.bundles import bundle, parts
from tests.support.bundles import communication as nictiz_communication
from tests.support.jsclient import JsClient
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration

BSN = "999911120"
PATIENT_NAME = "Johanna de Vries"
TEXT = "Graag wondcontrole na ontslag, wond onderbeen links."
NURSE_PASSWORD = "nurse-password-1"


def communication(
    identifier: str,
    *,
    bsn: str = BSN,
    postcode: str = "1092 AB",
    care_type: str = "wondzorg",
    text: str = TEXT,
) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": bsn}],
                "name": [{"text": PATIENT_NAME, "family": "de Vries", "given": ["Johanna"]}],
                "birthDate": "1948-03-12",
                "address": [{"postalCode": postcode}],
            },
            {
                "resourceType": "Practitioner",
                "id": "gp",
                "identifier": [
                    {"system": "http://fhir.nl/fhir/NamingSystem/agb-z", "value": "01000001"}
                ],
                "name": [{"text": "A. Jansen", "family": "Jansen", "given": ["A."]}],
            },
        ],
        "identifier": [{"system": "urn:oid:2.16.528.1.1007.3.3.01234567.1", "value": identifier}],
        "status": "in-progress",
        "category": [
            {
                "coding": [
                    {"system": "https://wijkbrug.nl/fhir/CodeSystem/care-type", "code": care_type}
                ]
            }
        ],
        "priority": "routine",
        "subject": {"reference": "#patient"},
        "sender": {"reference": "#gp"},
        "payload": [{"contentString": text}],
    }


@dataclass
class Site:
    bridge: BridgeSite
    synapse: SynapseInstance
    practice_token: str
    other_token: str


@pytest.fixture(scope="module")
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug"))
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url)
    bridge.start()
    # The pinned admin commands, run while the bridge is up: they apply at once.
    bridge.cli(
        "org", "add", "practice", "--agb", "01234567", "--name", "Huisartsenpraktijk De Pijp"
    )
    bridge.cli("org", "add", "practice", "--agb", "01234568", "--name", "Praktijk Elders")
    bridge.cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    bridge.cli(
        "team",
        "add",
        "--provider",
        "12345678",
        "--name",
        "Team Watergraafsmeer",
        "--member",
        "@nurse1:localhost",
    )
    bridge.cli(
        "route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678"
    )
    explain = bridge.cli("route", "explain", "--care-type", "wondzorg", "--postcode", "1092 AB")
    assert "Thuiszorg Oost" in explain.stdout
    token = bridge.cli("client", "add", "--org", "01234567", "--name", "his-test")
    other = bridge.cli("client", "add", "--org", "01234568", "--name", "his-other")
    synapse.register("nurse1", NURSE_PASSWORD)
    yield Site(
        bridge,
        synapse,
        token.stdout.strip().splitlines()[-1],
        other.stdout.strip().splitlines()[-1],
    )
    bridge.stop()


@pytest.fixture
async def nurse(site: Site) -> AsyncIterator[JsClient]:
    client = await JsClient.start(site.synapse.base_url, "@nurse1:localhost", NURSE_PASSWORD)
    yield client
    await client.close()


def fhir_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


async def test_gp_message_reaches_nurse_and_reply_returns(site: Site, nurse: JsClient) -> None:
    started = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("e2e-1")),
            headers=fhir_headers(site.practice_token),
        )
        assert posted.status_code == 201, posted.text
        original = posted.json()
        assert posted.headers["location"].startswith(
            f"{site.bridge.url}/fhir/Communication/{original['id']}"
        )

        # The nurse is invited to a case room that says nothing about the patient.
        joined = await nurse.wait_for("joined", timeout=60)
        room_id = joined["roomId"]
        state = await nurse.wait_for("room_state", lambda e: e["roomId"] == room_id)
        assert state["encryption"]["algorithm"] == "m.megolm.v1.aes-sha2"
        assert state["joinRule"] == "invite"
        assert state["historyVisibility"] in ("invited", "joined")
        for public in (state["name"], state["topic"]):
            assert BSN not in public and "Vries" not in public and "1092" not in public
        assert "Wondzorg" in state["name"]

        # The message arrives encrypted, from the ghost of the GP, with the patient context.
        msg = await nurse.wait_for("message", lambda e: e["roomId"] == room_id, timeout=60)
        assert msg["encrypted"] is True
        assert msg["sender"] == "@wijkbrug_agb_01000001:localhost"
        assert TEXT in msg["body"] and BSN in msg["body"] and PATIENT_NAME in msg["body"]
        assert msg["content"]["nl.wijkbrug.fhir"]["resourceType"] == "Communication"
        assert msg["content"]["nl.wijkbrug.case"]["care_type"] == "wondzorg"

        # The practice sees its message delivered.
        read = await http.get(
            f"/fhir/Communication/{original['id']}", headers=fhir_headers(site.practice_token)
        )
        assert read.status_code == 200 and read.json()["status"] == "completed"

        # She replies from her own client; the practice fetches the answer.
        answer = "Morgen om 10:00 komt wijkverpleegkundige Fatima langs."
        await nurse.send(room_id, answer)
        since = started.isoformat().replace("+00:00", "Z")
        reply: dict[str, Any] | None = None
        for _ in range(120):
            search = await http.get(
                "/fhir/Communication",
                params={"_lastUpdated": f"gt{since}", "_count": "10"},
                headers=fhir_headers(site.practice_token),
            )
            assert search.status_code == 200, search.text
            bundle = search.json()
            replies = [
                e["resource"] for e in bundle.get("entry", []) if e["resource"].get("inResponseTo")
            ]
            if replies:
                reply = replies[0]
                break
            await asyncio.sleep(0.5)
        assert reply is not None, site.bridge.log()[-3000:]
        assert reply["inResponseTo"] == [{"reference": f"Communication/{original['id']}"}]
        assert reply["payload"][0]["contentString"] == answer
        assert "@nurse1:localhost" in json.dumps(
            reply["sender"]
        ) or "@nurse1:localhost" in json.dumps(reply.get("contained", []))

        # Another practice's token sees none of it.
        other = await http.get("/fhir/Communication", headers=fhir_headers(site.other_token))
        assert other.json()["total"] == 0
        hidden = await http.get(
            f"/fhir/Communication/{original['id']}", headers=fhir_headers(site.other_token)
        )
        assert hidden.status_code == 404
        assert hidden.json()["resourceType"] == "OperationOutcome"

        # Re-posting the same identifier returns the existing resource and sends nothing.
        again = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("e2e-1")),
            headers=fhir_headers(site.practice_token),
        )
        assert again.status_code == 200 and again.json()["id"] == original["id"]
        second = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("e2e-2", text="Tweede bericht")),
            headers=fhir_headers(site.practice_token),
        )
        assert second.status_code == 201
        await nurse.wait_for("message", lambda e: "Tweede bericht" in e["body"], timeout=60)
        bodies = [e["body"] for e in nurse.events if e["event"] == "message"]
        assert sum(TEXT in b for b in bodies) == 1  # the re-post did not send twice
        # Same patient, practice and provider: the same case room, no second invite.
        assert [e["roomId"] for e in nurse.events if e["event"] == "joined"] == [room_id]

    # Nothing that identifies the patient, nor message text, ever reached the log, nor any
    # file of the installation in the clear: database (with its WAL), crypto stores, keys.
    log = site.bridge.log()
    secrets = (BSN, PATIENT_NAME, TEXT, answer, site.practice_token)
    for secret in secrets:
        assert secret not in log
    files = [p for p in site.bridge.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "wijkbrug.db" for p in files)
    for path in files:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, f"{secret[:6]}... in {path.name}"


async def test_bad_input_gets_operation_outcome(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
        headers = fhir_headers(site.practice_token)
        cases: list[tuple[bytes, int, str]] = [
            (b"{not json", 400, "invalid"),
            (json.dumps({"resourceType": "Patient"}).encode(), 400, ""),
            (json.dumps(communication("bad-bsn", bsn="123456789")).encode(), 400, "value"),
            (json.dumps(communication("bad-ct", care_type="tandarts")).encode(), 400, "value"),
            (
                json.dumps(communication("no-route", postcode="9999 ZZ")).encode(),
                422,
                "business-rule",
            ),
        ]
        for body, status, code in cases:
            resp = await http.post("/fhir/Communication", content=body, headers=headers)
            assert resp.status_code == status, (body[:40], resp.text)
            outcome = resp.json()
            assert outcome["resourceType"] == "OperationOutcome"
            if code:
                assert outcome["issue"][0]["code"] == code
            assert BSN not in resp.text
        no_route = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("no-route-2", postcode="9999 ZZ")),
            headers=headers,
        )
        assert "no route for wondzorg in PC4 9999" in no_route.text
        unauthorised = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("x")),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert unauthorised.status_code == 401
        assert unauthorised.json()["resourceType"] == "OperationOutcome"
        wrong = await http.get("/fhir/Communication", headers=fhir_headers("wbt_wrong"))
        assert wrong.status_code == 401


async def test_appservice_transactions_need_the_hs_token_and_are_idempotent(site: Site) -> None:
    hs_token = (Path(site.bridge.data_dir) / "secrets" / "hs_token").read_text().strip()
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
        url = "/_matrix/app/v1/transactions/test-txn-1"
        assert (await http.put(url, json={"events": []})).status_code == 401
        wrong = await http.put(url, json={"events": []}, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 403
        query = await http.put(f"{url}?access_token={hs_token}", json={"events": []})
        assert query.status_code == 401  # the token only counts in the header
        auth = {"Authorization": f"Bearer {hs_token}"}
        assert (await http.put(url, json={"events": []}, headers=auth)).status_code == 200
        assert (await http.put(url, json={"events": []}, headers=auth)).status_code == 200
        bad = await http.put(url + "b", content=b"[", headers=auth)
        assert bad.status_code == 400 and bad.json()["errcode"] == "M_NOT_JSON"


async def test_nictiz_examples_in_a_transaction_bundle_reach_the_nurse(
    site: Site, nurse: JsClient
) -> None:
    """A Communication built around the published Nictiz zib2020 examples (Patient,
    Practitioner, PractitionerRole, Organization), as a transaction Bundle, routes and
    reaches a case room with the Nictiz patient's context."""
    site.bridge.cli(
        "route", "add", "--care-type", "wondzorg", "--pc4", "1011-1018", "--provider", "12345678"
    )
    entries = parts()
    url, _ = entries["Communication"]
    entries["Communication"] = (url, nictiz_communication(recipient=None))
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication",
            content=json.dumps(bundle("transaction", entries)),
            headers=fhir_headers(site.practice_token),
        )
        assert posted.status_code == 201, posted.text
    msg = await nurse.wait_for("message", lambda e: "van Putten" in e["body"], timeout=60)
    assert "111222333" in msg["body"] and "1012 NX" in msg["body"]
    contained = msg["content"]["nl.wijkbrug.fhir"]["contained"]
    assert {r["resourceType"] for r in contained} >= {"Patient", "PractitionerRole"}


# A photo and a letter with markers that must never appear in the clear at rest.
PHOTO = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"WONDFOTO-MARKER-7f3a" + bytes(range(256)) * 64
LETTER = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n(BRIEF-MARKER-91c2) Tj\n%%EOF\n"


async def test_files_travel_encrypted_both_ways_and_refusals_are_explained(
    site: Site, nurse: JsClient
) -> None:
    started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = communication("e2e-file-1", text="Foto van de wond, dag 1")
    body["payload"].append(
        {
            "contentAttachment": {
                "contentType": "image/png",
                "data": base64.b64encode(PHOTO).decode(),
                "title": "wond-dag1.png",
            }
        }
    )
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication",
            content=json.dumps(body),
            headers=fhir_headers(site.practice_token),
        )
        assert posted.status_code == 201, posted.text

        # The practice's photo reaches the nurse as an encrypted attachment after the text.
        text = await nurse.wait_for("message", lambda e: "dag 1" in e["body"], timeout=60)
        room_id = text["roomId"]
        photo = await nurse.wait_for(
            "message",
            lambda e: e["roomId"] == room_id and e["content"].get("msgtype") == "m.image",
            timeout=60,
        )
        assert photo["encrypted"] is True and "url" not in photo["content"]
        assert photo["content"]["body"] == "wond-dag1.png"
        assert photo["content"]["info"] == {"mimetype": "image/png", "size": len(PHOTO)}
        assert await nurse.fetch_file(photo["content"]["file"]) == PHOTO

        # Her PDF reaches the practice system as a reply with a Binary it can fetch.
        await nurse.send_file(room_id, "wondverslag.pdf", "application/pdf", LETTER)
        attachment: dict[str, Any] | None = None
        for _ in range(120):
            search = await http.get(
                "/fhir/Communication",
                params={"_lastUpdated": f"gt{started}", "_count": "20"},
                headers=fhir_headers(site.practice_token),
            )
            for entry in search.json().get("entry", []):
                for payload in entry["resource"].get("payload", []):
                    if "contentAttachment" in payload and entry["resource"].get("inResponseTo"):
                        attachment = payload["contentAttachment"]
            if attachment:
                break
            await asyncio.sleep(0.5)
        assert attachment is not None, site.bridge.log()[-3000:]
        assert attachment["contentType"] == "application/pdf"
        assert attachment["title"] == "wondverslag.pdf" and attachment["size"] == len(LETTER)
        fetched = await http.get(
            attachment["url"].removeprefix(site.bridge.url),
            headers={"Authorization": f"Bearer {site.practice_token}"},
        )
        assert fetched.status_code == 200 and fetched.content == LETTER
        elsewhere = await http.get(
            attachment["url"].removeprefix(site.bridge.url),
            headers={"Authorization": f"Bearer {site.other_token}"},
        )
        assert elsewhere.status_code == 404

        # A file the region does not allow stays in the room, and she is told why.
        await nurse.send_file(room_id, "notitie.html", "text/html", b"<html><b>x</b></html>")
        refusal = await nurse.wait_for(
            "message", lambda e: "niet doorgestuurd" in e["body"], timeout=60
        )
        assert refusal["roomId"] == room_id and "JPEG, PNG en PDF" in refusal["body"]

    for path in (p for p in site.bridge.data_dir.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        assert b"WONDFOTO-MARKER" not in raw and b"BRIEF-MARKER" not in raw, path.name


def ecd_reply(answered: str, identifier: str, text: str) -> dict[str, Any]:
    """A nurse's answer as her care record system (ECD) posts it."""
    return {
        "resourceType": "Communication",
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "nurse",
                "identifier": [
                    {"system": "http://fhir.nl/fhir/NamingSystem/big", "value": "49012345601"}
                ],
                "name": [{"text": "Fatima El Amrani"}],
            }
        ],
        "identifier": [{"system": "urn:oid:2.16.528.1.1007.3.3.12345678.7", "value": identifier}],
        "status": "completed",
        "inResponseTo": [{"reference": f"Communication/{answered}"}],
        "sender": {"reference": "#nurse"},
        "payload": [{"contentString": text}],
    }


async def test_a_nurse_answers_from_her_care_record_system(site: Site, nurse: JsClient) -> None:
    """Mixed case: the practice's system posts, the nurse reads in her chat client, and
    her answer is written in the provider's ECD, which posts it: it appears in the case
    room (from her own ghost) and reaches the practice as a reply."""
    ecd = site.bridge.cli("client", "add", "--org", "12345678", "--name", "ecd").stdout
    ecd_token = ecd.strip().splitlines()[-1]
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("e2e-ecd-1", text="Vraag voor het ECD")),
            headers=fhir_headers(site.practice_token),
        )
        assert posted.status_code == 201, posted.text
        asked = posted.json()["id"]
        seen = await nurse.wait_for("message", lambda e: "Vraag voor het ECD" in e["body"])
        # The ECD finds the practice's message among its organisation's messages.
        inbox = await http.get(
            "/fhir/Communication", params={"_count": "100"}, headers=fhir_headers(ecd_token)
        )
        assert asked in {e["resource"]["id"] for e in inbox.json()["entry"]}

        text = "Vanmiddag om 15:00 langs. Groet, Fatima"
        answer = ecd_reply(asked, "ecd-answer-1", text)
        created = await http.post(
            "/fhir/Communication", content=json.dumps(answer), headers=fhir_headers(ecd_token)
        )
        assert created.status_code == 201, created.text
        again = await http.post(
            "/fhir/Communication", content=json.dumps(answer), headers=fhir_headers(ecd_token)
        )
        assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
        # Her answer means the team has seen the practice's message: it is received.
        original = await http.get(
            f"/fhir/Communication/{asked}", headers=fhir_headers(site.practice_token)
        )
        assert "received" in original.json(), original.json()

        # In the room, from her ghost, encrypted, once.
        shown = await nurse.wait_for(
            "message", lambda e: e["roomId"] == seen["roomId"] and e["body"] == text, timeout=60
        )
        assert shown["encrypted"] is True and shown["sender"].startswith("@wijkbrug_h_")
        # At the practice, as the answer to its message.
        reply: dict[str, Any] | None = None
        for _ in range(60):
            found = await http.get(
                f"/fhir/Communication/{created.json()['id']}",
                headers=fhir_headers(site.practice_token),
            )
            if found.status_code == 200 and found.json()["status"] == "completed":
                reply = found.json()
                break
            await asyncio.sleep(0.5)
        assert reply is not None
        assert reply["inResponseTo"] == [{"reference": f"Communication/{asked}"}]
        assert reply["payload"][0]["contentString"] == text
        assert "Fatima El Amrani" in json.dumps(reply["contained"])
        assert sum(e.get("body") == text for e in nurse.events if e["event"] == "message") == 1

        # An answer to a message this provider never had is refused where it is wrong.
        stray = ecd_reply("00000000-0000-4000-8000-000000000000", "ecd-stray", "x")
        refused = await http.post(
            "/fhir/Communication", content=json.dumps(stray), headers=fhir_headers(ecd_token)
        )
        assert refused.status_code == 404
        assert refused.json()["issue"][0]["expression"] == ["Communication.inResponseTo"]
