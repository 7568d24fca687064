"""Escalation on real parts: an urgent message that no nurse acknowledges in time is offered
to the next provider (whose nurse can read it, patient context included), the room is told,
and the practice system sees a status note; a read receipt in time prevents all that (and
shows the practice system that its message was received)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.integration.test_end_to_end import BSN, communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BridgeSite, SynapseInstance, str]]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-esc"))
    # Seconds instead of half an hour, so the test can watch it happen.
    bridge.configure(
        "escalation",
        {
            "urgent_minutes": 0.05,
            "asap_minutes": 0.05,
            "stat_minutes": 0.05,
            "check_interval_seconds": 0.5,
        },
    )
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url)
    bridge.start()
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk De Pijp")
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("org", "add", "provider", "--ura", "87654321", "--name", "Buurtzorg Centrum")
    cli("team", "add", "--provider", "12345678", "--name", "Oost", "--member", "@esc1:localhost")
    cli("team", "add", "--provider", "87654321", "--name", "Centrum", "--member", "@esc2:localhost")
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    cli(
        "route",
        "add",
        "--care-type",
        "wondzorg",
        "--pc4",
        "1091-1098",
        "--provider",
        "87654321",
        "--rank",
        "2",
    )
    token = cli("client", "add", "--org", "01234567", "--name", "his").stdout
    synapse.register("esc1", "pw-esc-1")
    synapse.register("esc2", "pw-esc-2")
    yield bridge, synapse, token.strip().splitlines()[-1]
    bridge.stop()


@pytest.fixture
async def nurses(
    site: tuple[BridgeSite, SynapseInstance, str],
) -> AsyncIterator[tuple[JsClient, JsClient]]:
    _, synapse, _ = site
    first = await JsClient.start(synapse.base_url, "@esc1:localhost", "pw-esc-1")
    second = await JsClient.start(synapse.base_url, "@esc2:localhost", "pw-esc-2")
    yield first, second
    await first.close()
    await second.close()


async def test_unacknowledged_urgent_message_is_offered_to_the_next_provider(
    site: tuple[BridgeSite, SynapseInstance, str], nurses: tuple[JsClient, JsClient]
) -> None:
    bridge, _, token = site
    first, second = nurses
    urgent = communication("esc-1", text="Spoed: wond lekt door verband")
    urgent["priority"] = "urgent"
    async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication", content=json.dumps(urgent), headers=fhir_headers(token)
        )
        assert posted.status_code == 201, posted.text
        comm_id = posted.json()["id"]
        msg = await first.wait_for("message", timeout=60)
        assert "[SPOED]" in msg["body"]
        # esc1 joined but never read it: after the limit, esc2 of the fallback provider is
        # invited and can read the forwarded message, patient context included.
        forwarded = await second.wait_for(
            "message", lambda e: "Doorgestuurd spoedbericht" in e["body"], timeout=60
        )
        assert forwarded["roomId"] == msg["roomId"]
        assert BSN in forwarded["body"] and "wond lekt" in forwarded["body"]
        notice = await first.wait_for("message", lambda e: "niet binnen" in e["body"], timeout=30)
        assert "Buurtzorg Centrum" in notice["body"]
        # The practice system sees it on the Communication it polls.
        read = await http.get(f"/fhir/Communication/{comm_id}", headers=fhir_headers(token))
        notes = [n["text"] for n in read.json().get("note", [])]
        assert any("Buurtzorg Centrum" in n for n in notes)
        # The region sees it too: the admin API (and page) list escalations.
        admin = bridge.cli("admin", "add", "--name", "regio", "--role", "region-admin")
        listed = await http.get(
            "/admin/api/escalations",
            headers={"Authorization": f"Bearer {admin.stdout.split()[-1]}"},
        )
        (escalation,) = listed.json()
        assert escalation["from_provider"] == "Thuiszorg Oost"
        assert escalation["to_provider"] == "Buurtzorg Centrum"
        assert escalation["case"].startswith("WB-")


async def test_read_receipt_in_time_prevents_escalation(
    site: tuple[BridgeSite, SynapseInstance, str], nurses: tuple[JsClient, JsClient]
) -> None:
    bridge, _, token = site
    first, second = nurses
    urgent = communication("esc-2", bsn="999990019", text="Spoed: pijn na val")
    urgent["priority"] = "urgent"
    async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication", content=json.dumps(urgent), headers=fhir_headers(token)
        )
        assert posted.status_code == 201, posted.text
        msg = await first.wait_for("message", lambda e: "pijn na val" in e["body"], timeout=60)
        await first.command({"cmd": "read", "roomId": msg["roomId"], "eventId": msg["eventId"]})
        await asyncio.sleep(8)  # well past the 3 s limit and several checks
        read = await http.get(
            f"/fhir/Communication/{posted.json()['id']}", headers=fhir_headers(token)
        )
        assert "note" not in read.json()
        assert not any(e["roomId"] == msg["roomId"] for e in second.events if "roomId" in e)
        # The practice system sees her read it: delivered (sent), then received, each a
        # new version, so polling on _lastUpdated finds the change.
        seen = read.json()
        assert seen["status"] == "completed" and seen["received"] >= seen["sent"]
        assert seen["meta"]["versionId"] == "3"
