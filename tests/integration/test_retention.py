"""Retention (AVG) on real parts: a closed case, once its period has passed, is gone from
the bridge (messages, files, queued work) and from the homeserver (the room and its
history, purged through Synapse's admin API), and only the audit trail remains, intact.
The period is set to seconds so the test can watch it happen."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_end_to_end import communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration


@pytest.fixture
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BridgeSite, SynapseInstance, str, str]]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-retention"))
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    synapse.register("hsadmin", "pw-hsadmin", admin=True)
    login = httpx.post(
        f"{synapse.base_url}/_matrix/client/v3/login",
        json={"type": "m.login.password", "user": "hsadmin", "password": "pw-hsadmin"},
        timeout=30,
    )
    admin_token = str(login.json()["access_token"])
    (bridge.data_dir / "secrets" / "homeserver_admin_token").write_text(admin_token)
    bridge.point_at(synapse.base_url)
    bridge.configure("homeserver", {"admin_token_path": "secrets/homeserver_admin_token"})
    bridge.configure("retention", {"closed_case_days": 3 / 86400, "check_interval_seconds": 0.5})
    bridge.start()
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk")
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("team", "add", "--provider", "12345678", "--name", "Oost", "--member", "@ret1:localhost")
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    token = cli("client", "add", "--org", "01234567", "--name", "his").stdout.split()[-1]
    synapse.register("ret1", "pw-ret-1")
    yield bridge, synapse, token, admin_token
    bridge.stop()


async def test_a_closed_case_is_purged_everywhere_after_its_period(
    site: tuple[BridgeSite, SynapseInstance, str, str],
) -> None:
    bridge, synapse, token, admin_token = site
    nurse = await JsClient.start(synapse.base_url, "@ret1:localhost", "pw-ret-1")
    admin = {"Authorization": f"Bearer {admin_token}"}
    try:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
            posted = await http.post(
                "/fhir/Communication",
                content=json.dumps(communication("ret-1", text="Te vergeten bericht")),
                headers=fhir_headers(token),
            )
            assert posted.status_code == 201, posted.text
            comm = posted.json()["id"]
            msg = await nurse.wait_for("message", lambda e: "vergeten" in e["body"], timeout=60)
            room = msg["roomId"]
            async with httpx.AsyncClient(base_url=synapse.base_url, timeout=30) as hs:
                known = await hs.get(f"/_synapse/admin/v1/rooms/{room}", headers=admin)
                assert known.status_code == 200  # the room exists while the case is open
                await nurse.send(room, "!sluit")
                await nurse.wait_for("message", lambda e: "gesloten" in e["body"], timeout=60)

                gone = False
                for _ in range(120):
                    read = await http.get(
                        f"/fhir/Communication/{comm}", headers=fhir_headers(token)
                    )
                    on_hs = await hs.get(f"/_synapse/admin/v1/rooms/{room}", headers=admin)
                    if read.status_code == 404 and on_hs.status_code == 404:
                        gone = True
                        break
                    await asyncio.sleep(0.5)
                assert gone, bridge.log()[-3000:]
    finally:
        await nurse.close()

    # Only the audit trail is left, whole, with the purge in it.
    verified = bridge.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = bridge.cli("audit", "export", "--patient", "999911120").stdout
    actions = [json.loads(line)["what"] for line in exported.splitlines() if line.strip()]
    assert actions[0] == "message.create" and "case.purge" in actions
