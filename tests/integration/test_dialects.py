"""Every dialect end to end on real parts: a message in STU3 (zib2017) and one in EDIFACT
(MEDVRI) reach the nurse's client, and her reply comes back pushed in the sender's own
dialect; a failing push is retried until it lands once; a push that keeps failing is
reported in the case room."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from fhir.resources.STU3.communication import Communication as Stu3Communication

from adapters import edifact_medvri
from bridge.homeserver import free_port
from tests.integration.test_end_to_end import communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient
from tests.support.receiver import PushReceiver
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass
class Site:
    bridge: BridgeSite
    synapse: SynapseInstance
    stu3_token: str
    edifact_token: str
    r4_token: str
    stu3_push: PushReceiver
    edifact_push: PushReceiver


@pytest.fixture(scope="module")
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-dialects"))
    bridge.configure(
        "delivery",
        {"backoff_initial_seconds": 0.2, "max_attempts": 4, "decrypt_timeout_seconds": 3},
    )
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url)
    with PushReceiver(fail_first=2) as stu3_push, PushReceiver() as edifact_push:
        bridge.start()
        cli = bridge.cli
        cli("org", "add", "practice", "--agb", "01234567", "--name", "Huisartsenpraktijk De Pijp")
        cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Amstel")
        cli(
            "team", "add", "--provider", "12345678", "--name", "Zuid", "--member", "@dia1:localhost"
        )
        cli(
            "route",
            "add",
            "--care-type",
            "wondzorg",
            "--pc4",
            "1071-1079",
            "--provider",
            "12345678",
        )

        def token(*args: str) -> str:
            return str(cli("client", "add", "--org", "01234567", *args).stdout.split()[-1])

        stu3 = token("--name", "his-stu3", "--dialect", "fhir-stu3", "--push-url", stu3_push.url)
        edi = token(
            "--name", "his-edi", "--dialect", "edifact-medvri", "--push-url", edifact_push.url
        )
        r4 = token("--name", "his-r4")
        synapse.register("dia1", "pw-dia-1")
        yield Site(bridge, synapse, stu3, edi, r4, stu3_push, edifact_push)
        bridge.stop()


async def eventually(what: str, check: Callable[[], bool], receiver: PushReceiver) -> None:
    for _ in range(120):
        if check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}; {receiver.attempts} attempt(s)")


async def reply_and_wait(
    nurse: JsClient, room_id: str, text: str, receiver: PushReceiver, count: int
) -> None:
    await nurse.send(room_id, text)
    await eventually("no push after reply", lambda: len(receiver.replies()) >= count, receiver)


async def test_stu3_and_edifact_reach_the_nurse_and_replies_return_in_dialect(
    site: Site,
) -> None:
    nurse = await JsClient.start(site.synapse.base_url, "@dia1:localhost", "pw-dia-1")
    try:
        async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
            # STU3, as a zib2017 practice system sends it (identifier OIDs and all).
            stu3_body = (DATA / "stu3" / "Communication-wondzorg-practitioner.json").read_bytes()
            posted = await http.post(
                "/fhir/stu3/Communication",
                content=stu3_body,
                headers={
                    "Authorization": f"Bearer {site.stu3_token}",
                    "Content-Type": "application/fhir+json",
                },
            )
            assert posted.status_code == 201, posted.text
            stu3_id = posted.json()["id"]
            assert "inResponseTo" not in posted.json()  # written back as STU3
            first = await nurse.wait_for("message", timeout=60)
            assert first["encrypted"] is True
            # Delivered in the room: the practice system is told (a conditional update on
            # its own identifier), after two 500s from its endpoint, once.
            push = site.stu3_push
            await eventually("no delivery status", lambda: bool(push.statuses()), push)
            assert push.attempts == 3
            delivered = push.statuses()[0]
            Stu3Communication.model_validate(delivered)
            assert delivered["status"] == "completed" and "sent" in delivered
            assert "received" not in delivered
            sent_identifier = json.loads(stu3_body)["identifier"][0]
            assert push.received[0].path == "/Communication?" + urlencode(
                {"identifier": f"{sent_identifier['system']}|{sent_identifier['value']}"}
            )
            await reply_and_wait(nurse, first["roomId"], "STU3-antwoord: morgen langs.", push, 1)
            pushed = push.replies()[0]
            assert pushed.path == "/Communication"
            assert pushed.headers["If-None-Exist"].startswith("identifier=")
            # Her reply means she read it: the practice's message is now received.
            await eventually("no read status", lambda: len(push.statuses()) == 2, push)
            read = push.statuses()[1]
            assert read["id"] == stu3_id and read["received"] >= read["sent"]
            mine = await http.get(
                f"/fhir/stu3/Communication/{stu3_id}",
                headers={"Authorization": f"Bearer {site.stu3_token}"},
            )
            assert mine.json()["received"] == read["received"]
            reply = json.loads(pushed.body)
            Stu3Communication.model_validate(reply)  # valid STU3
            assert reply["payload"][0]["contentString"] == "STU3-antwoord: morgen langs."
            assert stu3_id in json.dumps(reply)  # it answers the practice's message
            # The STU3 face also serves it on fetch, and refuses an R4 client's post.
            fetched = await http.get(
                "/fhir/stu3/Communication",
                params={"_count": "10"},
                headers={"Authorization": f"Bearer {site.stu3_token}"},
            )
            assert fetched.status_code == 200 and fetched.json()["total"] >= 2
            wrong = await http.post(
                "/fhir/stu3/Communication",
                content=stu3_body,
                headers={
                    "Authorization": f"Bearer {site.r4_token}",
                    "Content-Type": "application/fhir+json",
                },
            )
            assert wrong.status_code == 400
            assert wrong.json()["resourceType"] == "OperationOutcome"

            # EDIFACT MEDVRI, as GP systems send through the mail hubs.
            interchange = (DATA / "edifact" / "medvri-normal.edi").read_bytes()
            edi = await http.post(
                "/edifact",
                content=interchange,
                headers={
                    "Authorization": f"Bearer {site.edifact_token}",
                    "Content-Type": "application/edifact",
                },
            )
            assert edi.status_code == 201, edi.text
            assert [m["status"] for m in edi.json()["messages"]] == ["created"]
            again = await http.post(
                "/edifact",
                content=interchange,
                headers={
                    "Authorization": f"Bearer {site.edifact_token}",
                    "Content-Type": "application/edifact",
                },
            )
            assert again.status_code == 200
            assert [m["status"] for m in again.json()["messages"]] == ["existing"]
            letter = await nurse.wait_for(
                "message", lambda e: "wondbeleid" in e["body"], timeout=60
            )
            assert "999990019" in letter["body"]  # patient context from PID
            await reply_and_wait(
                nurse, letter["roomId"], "EDI-antwoord: vanmiddag.", site.edifact_push, 1
            )
            medvri = site.edifact_push.received[0]
            assert len(site.edifact_push.received) == 1  # a MEDVRI letter carries no status
            assert medvri.headers["Content-Type"] == "application/edifact"
            assert medvri.body.startswith(b"UNA") and b"UNH+" in medvri.body
            back = edifact_medvri.parse_interchange(medvri.body, "application/edifact")
            assert back[0].text.endswith("EDI-antwoord: vanmiddag.")

            bad = await http.post(
                "/edifact",
                content=(DATA / "edifact" / "broken-bad-bsn.edi").read_bytes(),
                headers={
                    "Authorization": f"Bearer {site.edifact_token}",
                    "Content-Type": "application/edifact",
                },
            )
            assert bad.status_code == 400
            assert bad.json()["segment"] == "PID" and "segment_index" in bad.json()
    finally:
        await nurse.close()


async def test_a_push_that_keeps_failing_is_reported_in_the_room(site: Site) -> None:
    cli = site.bridge.cli
    cli("org", "add", "practice", "--agb", "01234568", "--name", "Praktijk Onbereikbaar")
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    token = cli(
        "client", "add", "--org", "01234568", "--name", "his-dead", "--push-url", dead
    ).stdout.split()[-1]
    nurse = await JsClient.start(site.synapse.base_url, "@dia1:localhost", "pw-dia-1")
    try:
        async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
            posted = await http.post(
                "/fhir/Communication",
                content=json.dumps(communication("dead-1", text="Bericht van een praktijk")),
                headers=fhir_headers(token),
            )
            assert posted.status_code == 201, posted.text
            msg = await nurse.wait_for(
                "message", lambda e: "Bericht van een praktijk" in e["body"], timeout=60
            )
            await nurse.send(msg["roomId"], "Antwoord dat niet aankomt")
            notice = await nurse.wait_for(
                "message",
                lambda e: (
                    "kon niet worden afgeleverd" in e["body"] and e["roomId"] == msg["roomId"]
                ),
                timeout=60,
            )
            assert "Praktijk Onbereikbaar" in notice["body"]
            # The reply is still there to fetch.
            search = await http.get("/fhir/Communication", headers=fhir_headers(token))
            texts = json.dumps(search.json())
            assert "Antwoord dat niet aankomt" in texts
    finally:
        await nurse.close()


async def test_a_reply_that_stays_undecryptable_is_announced(site: Site) -> None:
    """A client that never shares its key (here: an event for a session nobody has) gets a
    clear notice in the room instead of a silent drop."""
    nurse = await JsClient.start(site.synapse.base_url, "@dia1:localhost", "pw-dia-1")
    try:
        room_id = next(e["roomId"] for e in nurse.events if e["event"] == "joined")
        hs_token = (site.bridge.data_dir / "secrets" / "hs_token").read_text().strip()
        event = {
            "type": "m.room.encrypted",
            "event_id": "$never-decryptable",
            "room_id": room_id,
            "sender": "@dia1:localhost",
            "origin_server_ts": 1_700_000_000_000,
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEnB",
                "sender_key": "c2VuZGVya2V5",
                "session_id": "no-such-session",
                "device_id": "NOKEYS",
            },
        }
        async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
            resp = await http.put(
                "/_matrix/app/v1/transactions/undecryptable-1",
                json={"events": [event]},
                headers={"Authorization": f"Bearer {hs_token}"},
            )
            assert resp.status_code == 200
        notice = await nurse.wait_for(
            "message", lambda e: "niet ontsleutelen" in e["body"], timeout=60
        )
        assert notice["roomId"] == room_id and notice["sender"] == "@wijkbrug:localhost"
    finally:
        await nurse.close()
