"""The other direction, out of hours: a nurse's message in a case room outside the
region's office hours also goes to the huisartsenpost: its doctor (in her own Matrix
client) is invited and can read the question with the patient context, and the
huisartsenpost's practice system can fetch it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

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
) -> Iterator[tuple[BridgeSite, SynapseInstance, str, str]]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-ooh"))
    # A region whose practices are never open: every nurse message is "out of hours".
    bridge.configure("office_hours", {"opens": "00:00", "closes": "00:00"})
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url)
    bridge.start()
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk De Pijp")
    cli("org", "add", "hap", "--agb", "01234599", "--name", "Huisartsenpost Amsterdam")
    cli(
        "practitioner",
        "add",
        "--org",
        "01234599",
        "--name",
        "Dr. P. Post",
        "--agb",
        "01000099",
        "--matrix-id",
        "@hapdoc:localhost",
    )
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("team", "add", "--provider", "12345678", "--name", "Oost", "--member", "@ooh1:localhost")
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    practice = cli("client", "add", "--org", "01234567", "--name", "his").stdout.split()[-1]
    hap = cli("client", "add", "--org", "01234599", "--name", "hap-his").stdout.split()[-1]
    synapse.register("ooh1", "pw-ooh-1")
    synapse.register("hapdoc", "pw-hapdoc")
    explain = cli("route", "gp", "--practice", "01234567")
    assert "huisartsenpost Huisartsenpost Amsterdam" in explain.stdout
    # The region's own office hours (here: never open) are what route explain uses too.
    routed = cli("route", "explain", "--care-type", "wondzorg", "--postcode", "1092 AB")
    assert "outside office hours (00:00-00:00)" in routed.stdout
    yield bridge, synapse, practice, hap
    bridge.stop()


async def test_nurse_question_out_of_hours_reaches_the_huisartsenpost(
    site: tuple[BridgeSite, SynapseInstance, str, str],
) -> None:
    bridge, synapse, practice_token, hap_token = site
    nurse = await JsClient.start(synapse.base_url, "@ooh1:localhost", "pw-ooh-1")
    doctor = await JsClient.start(synapse.base_url, "@hapdoc:localhost", "pw-hapdoc")
    try:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
            posted = await http.post(
                "/fhir/Communication",
                content=json.dumps(communication("ooh-1")),
                headers=fhir_headers(practice_token),
            )
            assert posted.status_code == 201, posted.text
            msg = await nurse.wait_for("message", timeout=60)
            question = "Koorts 39,5 en de wond is rood: mag ze paracetamol?"
            await nurse.send(msg["roomId"], question)
            forwarded = await doctor.wait_for(
                "message", lambda e: question in e["body"], timeout=60
            )
            assert forwarded["roomId"] == msg["roomId"]
            assert "Huisartsenpost Amsterdam" in forwarded["body"] and BSN in forwarded["body"]
            found: list[str] = []
            for _ in range(60):
                search = await http.get("/fhir/Communication", headers=fhir_headers(hap_token))
                found = [
                    e["resource"]["payload"][0]["contentString"]
                    for e in search.json().get("entry", [])
                ]
                if question in found:
                    break
                await asyncio.sleep(0.5)
            assert found == [question]  # the HAP sees the nurse's message, not the GP's
            mine = await http.get("/fhir/Communication", headers=fhir_headers(practice_token))
            assert mine.json()["total"] == 2  # the practice keeps seeing its case
    finally:
        await nurse.close()
        await doctor.close()
