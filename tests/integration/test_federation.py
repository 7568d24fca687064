"""A home-care provider with its own homeserver: a case works across two federating
Synapses, and the allow-list keeps a third, unregistered homeserver out.

    hs1  localhost:P1   Wijkbrug's homeserver: appservice + policy module
                        (allowed_servers: [hs2])
    hs2  localhost:P2   Thuiszorg Oost's homeserver: @nurse, in the team's directory entry
    hs3  localhost:P3   someone else's homeserver: @outsider, known to nobody

    practice HIS --FHIR--> wijkbrug --> hs1 ==federation (TLS, test CA)==> hs2 --> nurse
    nurse --reply--> hs2 ==> hs1 --AS txn--> wijkbrug --GET /fhir/Communication--> HIS
    nurse --invite @outsider--> hs2 ==> hs3 (invite), hs1 (refused: soft-failed)
    outsider --join (via hs2)--> hs2 ==> hs1 (refused: soft-failed)

Each server has its own certificate from a CA made for this test and checks the others'
against that CA only (tests/support/federation.py); the last test shows that a server
with another CA's certificate is refused at the TLS handshake.

What the allow-list can and cannot do: hs1 (where the case room, the bot and the ghosts
live) never lets the outsider in, so nothing the bridge sends is encrypted for him. hs2 is
the provider's own server and runs no Wijkbrug module: what stops its nurse there is the
room's power levels (only the bot and the ghosts may invite), which every server
enforces. A server that lets her invite anyway also lets the outsider join on its side,
and her client then counts him as a member. A server ACL (m.room.server_acl) would make
hs2 refuse him too, but ACLs match host names without ports, so three servers on one
loopback host cannot show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from bridge.config import load_settings, policy_module, write_registration
from bridge.homeserver import free_port
from tests.integration.test_end_to_end import BSN, PATIENT_NAME, TEXT, communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.federation import (
    TestCA,
    federation_listener,
    federation_settings,
    server_name,
)
from tests.support.jsclient import JsClient, JsClientError
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration

NURSE_PASSWORD = "pw-federated-nurse"
OUTSIDER_PASSWORD = "pw-outsider"
# bridge.synapse_policy's reason and log line (the module imports Synapse: not imported here)
NOT_ALLOWED_SERVER = "this user's homeserver is not allowed in case rooms of this region"
REASON_KEY = "nl.wijkbrug.reason"


@dataclass
class Region:
    bridge: BridgeSite
    hs1: SynapseInstance
    hs2: SynapseInstance
    hs3: SynapseInstance
    ca: TestCA
    practice_token: str
    as_token: str

    @property
    def bot(self) -> str:
        return self.hs1.user_id("wijkbrug")

    @property
    def nurse(self) -> str:
        return self.hs2.user_id("nurse")

    @property
    def outsider(self) -> str:
        return self.hs3.user_id("outsider")


@pytest.fixture(scope="module")
def region(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Region]:
    ca = TestCA(tmp_path_factory.mktemp("test-ca"))
    ports = [free_port() for _ in range(3)]
    names = [server_name(port) for port in ports]

    # Wijkbrug serves hs1 and lets the provider's server (hs2) into case rooms.
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-federation"))
    bridge.configure("homeserver", {"server_name": names[0], "allowed_servers": [names[1]]})
    settings = load_settings(bridge.config_path)
    write_registration(settings)  # its namespaces name hs1

    def homeserver(index: int, **bridge_parts: Any) -> SynapseInstance:
        return synapse_factory(
            server_name=names[index],
            extra_listeners=[federation_listener(ports[index])],
            extra_config=federation_settings(ca.issue(f"hs{index + 1}"), ca),
            **bridge_parts,
        )

    hs1 = homeserver(
        0, appservice_files=[bridge.registration_path], modules=[policy_module(settings)]
    )
    hs2, hs3 = homeserver(1), homeserver(2)

    bridge.point_at(hs1.base_url)
    bridge.start()
    nurse = hs2.register("nurse", NURSE_PASSWORD)
    hs3.register("outsider", OUTSIDER_PASSWORD)
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Huisartsenpraktijk De Pijp")
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("team", "add", "--provider", "12345678", "--name", "Team Oost", "--member", nurse)
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    token = cli("client", "add", "--org", "01234567", "--name", "his").stdout.split()[-1]
    yield Region(bridge, hs1, hs2, hs3, ca, token, settings.secret("as_token"))
    bridge.stop()


@pytest.fixture(scope="module")
async def nurse(region: Region) -> AsyncIterator[JsClient]:
    """Thuiszorg Oost's nurse, in her client, on her organisation's homeserver (hs2)."""
    client = await JsClient.start(region.hs2.base_url, region.nurse, NURSE_PASSWORD)
    yield client
    await client.close()


@dataclass(frozen=True)
class Case:
    room_id: str
    communication_id: str
    posted_at: datetime


@pytest.fixture(scope="module")
async def case(region: Region, nurse: JsClient) -> Case:
    """A practice's FHIR message: the nurse on hs2 is invited over federation and joins."""
    posted_at = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=region.bridge.url, timeout=30) as http:
        posted = await http.post(
            "/fhir/Communication",
            content=json.dumps(communication("federation-1")),
            headers=fhir_headers(region.practice_token),
        )
        assert posted.status_code == 201, posted.text
    joined = await nurse.wait_for("joined", timeout=60)
    return Case(str(joined["roomId"]), str(posted.json()["id"]), posted_at)


# ---------------------------------------------------------------------- helpers


async def as_bot(
    region: Region, method: str, room_id: str, rest: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """A call about a room on hs1 as the bot, the way the bridge makes it (as_token)."""
    async with httpx.AsyncClient(base_url=region.hs1.base_url, timeout=30) as http:
        return await http.request(
            method,
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}{rest}",
            params={"user_id": region.bot},
            headers={"Authorization": f"Bearer {region.as_token}"},
            json=body,
        )


async def hs1_members(region: Region, room_id: str) -> dict[str, str]:
    """Who is in the case room as hs1 (and so the bridge) sees it."""
    response = await as_bot(region, "GET", room_id, "/members")
    assert response.status_code == 200, response.text
    return {e["state_key"]: e["content"]["membership"] for e in response.json()["chunk"]}


def hs1_log(region: Region) -> str:
    return (region.hs1.directory / "homeserver.log").read_text(errors="replace")


async def wait_for_log(region: Region, line: str, timeout: float = 30) -> None:  # noqa: ASYNC109
    """Federation is asynchronous: wait until hs1 has logged ``line``."""
    for _ in range(int(timeout / 0.2)):
        if line in hs1_log(region):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"hs1 did not log {line!r} within {timeout:.0f}s")


async def refusal(client: JsClient, cmd: dict[str, Any]) -> dict[str, Any]:
    """Run a command that must fail; return the failed result (errcode, data)."""
    with pytest.raises(JsClientError):
        await client.command(cmd)
    return [e for e in client.events if e.get("event") == "result" and not e.get("ok")][-1]


async def fhir_reply(region: Region, case: Case) -> dict[str, Any]:
    """The nurse's reply as the practice system finds it (polled)."""
    since = case.posted_at.isoformat().replace("+00:00", "Z")
    async with httpx.AsyncClient(base_url=region.bridge.url, timeout=30) as http:
        for _ in range(120):
            search = await http.get(
                "/fhir/Communication",
                params={"_lastUpdated": f"gt{since}", "_count": "10"},
                headers=fhir_headers(region.practice_token),
            )
            assert search.status_code == 200, search.text
            for entry in search.json().get("entry", []):
                if entry["resource"].get("inResponseTo"):
                    reply: dict[str, Any] = entry["resource"]
                    return reply
            await asyncio.sleep(0.5)
    raise AssertionError(f"no reply in FHIR:\n{region.bridge.log()[-3000:]}")


# ---------------------------------------------------------------------- tests


async def test_case_works_across_two_homeservers(
    region: Region, nurse: JsClient, case: Case
) -> None:
    # The nurse's own server (hs2) holds the room too: a private, encrypted case room.
    state = await nurse.wait_for("room_state", lambda e: e["roomId"] == case.room_id)
    assert state["encryption"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert state["joinRule"] == "invite" and state["historyVisibility"] == "invited"
    assert BSN not in state["name"] and "Vries" not in state["name"]

    # The GP's message crossed the federation encrypted, and she decrypts it.
    msg = await nurse.wait_for("message", lambda e: e["roomId"] == case.room_id, timeout=60)
    assert msg["encrypted"] is True
    assert msg["sender"] == region.hs1.user_id("wijkbrug_agb_01000001")
    assert TEXT in msg["body"] and BSN in msg["body"] and PATIENT_NAME in msg["body"]
    assert msg["content"]["nl.wijkbrug.fhir"]["resourceType"] == "Communication"

    # Her answer goes back through hs1 to the bridge, which decrypts it for the practice.
    answer = "Morgen om 10:00 komt de wijkverpleegkundige van Thuiszorg Oost langs."
    await nurse.send(case.room_id, answer)
    reply = await fhir_reply(region, case)
    assert reply["inResponseTo"] == [{"reference": f"Communication/{case.communication_id}"}]
    assert reply["payload"][0]["contentString"] == answer
    assert region.nurse in json.dumps([reply["sender"], reply.get("contained", [])])
    assert "Thuiszorg Oost" in json.dumps(reply)

    members = await hs1_members(region, case.room_id)
    assert members[region.nurse] == "join"


async def test_allow_list_keeps_a_third_server_out(
    region: Region, nurse: JsClient, case: Case
) -> None:
    outsider = await JsClient.start(
        region.hs3.base_url, region.outsider, OUTSIDER_PASSWORD, auto_join=False
    )
    try:
        invite = {"cmd": "invite", "roomId": case.room_id, "userId": region.outsider}

        # As a nurse she cannot invite anyone: her own server applies the room's power
        # levels (only the bot and the ghosts invite), as every server in the room does.
        failed = await refusal(nurse, invite)
        assert failed["errcode"] == "M_FORBIDDEN"
        assert REASON_KEY not in (failed.get("data") or {})  # hs2 has no Wijkbrug module

        # Suppose her server let her (here: the bot gives her every power of the room).
        # hs2 then sends the invite to hs3 and to hs1, and hs1's allow-list refuses it.
        levels_path = "/state/m.room.power_levels/"
        levels = (await as_bot(region, "GET", case.room_id, levels_path)).json()
        levels["users"] = {**levels.get("users", {}), region.nurse: 100}
        raised = await as_bot(region, "PUT", case.room_id, levels_path, levels)
        assert raised.status_code == 200, raised.text
        for _ in range(100):  # until hs2 has the new power levels
            with contextlib.suppress(JsClientError):
                await nurse.command(invite)
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError("hs2 never let the nurse invite")
        await outsider.wait_for("invite", lambda e: e["roomId"] == case.room_id, timeout=30)
        refused = "Wijkbrug policy refused m.room.member from {} in {}: " + NOT_ALLOWED_SERVER
        await wait_for_log(region, refused.format(region.nurse, case.room_id))

        # The outsider accepts through hs2 (the inviter's server); hs1 refuses his join.
        await outsider.command({"cmd": "join", "roomId": case.room_id})
        await wait_for_log(region, refused.format(region.outsider, case.room_id))
        assert region.outsider not in await hs1_members(region, case.room_id)

        # Not even the bridge's bot can bring him in: his server is not on the list.
        bot_invite = await as_bot(
            region, "POST", case.room_id, "/invite", {"user_id": region.outsider}
        )
        assert bot_invite.status_code == 403, bot_invite.text
        assert bot_invite.json()[REASON_KEY] == NOT_ALLOWED_SERVER

        # The case goes on: the next message of the practice reaches the nurse, encrypted
        # by hs1's ghost for the members hs1 knows, which do not include the outsider.
        second = "Tweede bericht: graag ook de medicatie controleren."
        async with httpx.AsyncClient(base_url=region.bridge.url, timeout=30) as http:
            posted = await http.post(
                "/fhir/Communication",
                content=json.dumps(communication("federation-2", text=second)),
                headers=fhir_headers(region.practice_token),
            )
            assert posted.status_code == 201, posted.text
        message = await nurse.wait_for("message", lambda e: second in e["body"], timeout=60)
        assert message["roomId"] == case.room_id
        members = await hs1_members(region, case.room_id)
        assert region.outsider not in members and members[region.nurse] == "join"
        leaked = [e for e in outsider.events if second in str(e.get("body"))]
        assert leaked == []
    finally:
        await outsider.close()


async def test_a_certificate_from_another_ca_is_refused(region: Region, tmp_path: Path) -> None:
    """hs1 checks a server's certificate against the test CA: a server that presents one
    from another CA is hung up on during the TLS handshake."""
    foreign = TestCA(tmp_path / "other-ca").issue("impostor")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(foreign.cert_path, foreign.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = listener.getsockname()[1]
    errors: list[str] = []

    def serve_one_handshake() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                try:
                    with context.wrap_socket(connection, server_side=True):
                        errors.append("handshake completed")
                except (ssl.SSLError, OSError) as exc:
                    errors.append(str(exc))

    thread = threading.Thread(target=serve_one_handshake, daemon=True)
    thread.start()
    # Asking hs1 for a profile on that server makes hs1 connect to it over federation.
    async with httpx.AsyncClient(base_url=region.hs1.base_url, timeout=60) as http:
        response = await http.get(
            f"/_matrix/client/v3/profile/{quote(f'@someone:localhost:{port}', safe='')}",
            params={"user_id": region.bot},
            headers={"Authorization": f"Bearer {region.as_token}"},
        )
    await asyncio.to_thread(thread.join, 30)
    assert response.status_code >= 400, response.text
    assert errors and "unknown ca" in errors[0].lower(), errors
