"""The homeserver keeps case rooms closed, whatever a client tries: a real Synapse loads
``bridge.synapse_policy`` against the running bridge; a case room is made by the normal
flow (a GP's FHIR message); then matrix-js-sdk clients (and raw HTTP) try their luck.

    practice HIS --POST /fhir/Communication--> wijkbrug --> Synapse (+ Wijkbrug policy)
        policy --GET /_wijkbrug/policy/v1/users/{id}--> wijkbrug (who is registered)
    nurse (registered)   : invited, joins; cannot invite, open the room or publish it
    stranger (not)       : cannot join, cannot be invited (not even by the bot)
    bot                  : still invites registered people; opens nothing by accident
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from bridge.config import load_settings, policy_module
from tests.integration.test_end_to_end import communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient, JsClientError
from tests.support.synapse import SynapseFactory, SynapseInstance

with warnings.catch_warnings():  # Synapse's import-time deprecation warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    from bridge.synapse_policy import (
        NOT_INVITER,
        NOT_OPENER,
        NOT_PUBLISHER,
        NOT_REGISTERED,
        REASON_KEY,
        UNCONFIRMED,
    )

pytestmark = pytest.mark.integration

BOT = "@wijkbrug:localhost"
NURSE, NURSE_PASSWORD = "@polnurse:localhost", "pw-polnurse"
GP, GP_PASSWORD = "@polgp:localhost", "pw-polgp"
LATE_GP, LATE_GP_PASSWORD = "@polgp2:localhost", "pw-polgp2"
STRANGER, STRANGER_PASSWORD = "@stranger:localhost", "pw-stranger"


@dataclass
class Site:
    bridge: BridgeSite
    synapse: SynapseInstance
    practice_token: str
    as_token: str


@pytest.fixture(scope="module")
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-policy"))
    settings = load_settings(bridge.config_path)
    synapse = synapse_factory(
        appservice_files=[bridge.registration_path], modules=[policy_module(settings)]
    )
    bridge.point_at(synapse.base_url)
    bridge.start()
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk De Pijp")
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("team", "add", "--provider", "12345678", "--name", "Oost", "--member", NURSE)
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    for name, agb, matrix_id in (("Dr. Polder", "01000002", GP), ("Dr. Laat", "01000003", LATE_GP)):
        practitioner = ["--org", "01234567", "--name", name, "--agb", agb, "--matrix-id", matrix_id]
        cli("practitioner", "add", *practitioner)
    token = cli("client", "add", "--org", "01234567", "--name", "his").stdout.split()[-1]
    for user, password in (
        (NURSE, NURSE_PASSWORD),
        (GP, GP_PASSWORD),
        (LATE_GP, LATE_GP_PASSWORD),
        (STRANGER, STRANGER_PASSWORD),
    ):
        synapse.register(user[1:].split(":")[0], password)
    yield Site(bridge, synapse, token, settings.secret("as_token"))
    bridge.stop()


# ---------------------------------------------------------------------- helpers


async def as_bot(
    site: Site, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """A client-server call as the bot, the way the bridge makes it (as_token, user_id)."""
    async with httpx.AsyncClient(base_url=site.synapse.base_url, timeout=30) as http:
        return await http.request(
            method,
            f"/_matrix/client/v3{path}",
            params={"user_id": BOT},
            headers={"Authorization": f"Bearer {site.as_token}"},
            json=body,
        )


def room_path(room_id: str, rest: str) -> str:
    return f"/rooms/{quote(room_id, safe='')}{rest}"


def reason_of(response: httpx.Response) -> str | None:
    """The module's reason in a refusal (403 M_FORBIDDEN), to tell it from other refusals."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["errcode"] == "M_FORBIDDEN"
    reason: str | None = body.get(REASON_KEY)
    return reason


async def refusal(client: JsClient, cmd: dict[str, Any]) -> str | None:
    """Run a command that must fail with M_FORBIDDEN; return the module's reason."""
    with pytest.raises(JsClientError):
        await client.command(cmd)
    failed = [e for e in client.events if e.get("event") == "result" and not e.get("ok")]
    result = failed[-1]
    assert result["errcode"] == "M_FORBIDDEN", result
    data = result.get("data") or {}
    reason: str | None = data.get(REASON_KEY)
    return reason


async def members(site: Site, room_id: str) -> dict[str, str]:
    response = await as_bot(site, "GET", room_path(room_id, "/members"))
    assert response.status_code == 200, response.text
    return {e["state_key"]: e["content"]["membership"] for e in response.json()["chunk"]}


async def state(site: Site, room_id: str, event_type: str) -> dict[str, Any]:
    response = await as_bot(site, "GET", room_path(room_id, f"/state/{event_type}/"))
    assert response.status_code == 200, response.text
    content: dict[str, Any] = response.json()
    return content


@pytest.fixture(scope="module")
async def case_room(site: Site) -> str:
    """A case room made by the normal flow; the registered nurse is invited and joins."""
    nurse = await JsClient.start(site.synapse.base_url, NURSE, NURSE_PASSWORD)
    try:
        async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as http:
            posted = await http.post(
                "/fhir/Communication",
                content=json.dumps(communication("policy-1")),
                headers=fhir_headers(site.practice_token),
            )
            assert posted.status_code == 201, posted.text
        joined = await nurse.wait_for("joined", timeout=60)
        room_id = str(joined["roomId"])
        # The ghost (the bridge's namespace) joined and its encrypted message arrived.
        message = await nurse.wait_for("message", lambda e: e["roomId"] == room_id, timeout=60)
        assert message["encrypted"] is True
        return room_id
    finally:
        await nurse.close()


@pytest.fixture
async def nurse(site: Site, case_room: str) -> AsyncIterator[JsClient]:
    client = await JsClient.start(site.synapse.base_url, NURSE, NURSE_PASSWORD)
    yield client
    await client.close()


# ---------------------------------------------------------------------- tests


async def test_registered_nurse_is_invited_and_joins(site: Site, case_room: str) -> None:
    room = await members(site, case_room)
    assert room[NURSE] == "join"
    assert room["@wijkbrug_agb_01000001:localhost"] == "join"
    assert site.as_token not in (site.synapse.directory / "homeserver.log").read_text()


async def test_unregistered_user_cannot_join_nor_be_invited(
    site: Site, case_room: str, nurse: JsClient
) -> None:
    stranger = await JsClient.start(
        site.synapse.base_url, STRANGER, STRANGER_PASSWORD, auto_join=False
    )
    try:
        assert await refusal(stranger, {"cmd": "join", "roomId": case_room}) == NOT_REGISTERED
        # The nurse cannot pull anyone in: not a stranger, not even a registered GP.
        invite = {"cmd": "invite", "roomId": case_room}
        assert await refusal(nurse, {**invite, "userId": STRANGER}) == NOT_INVITER
        assert await refusal(nurse, {**invite, "userId": GP}) == NOT_INVITER
        # Not even the bot brings in someone the bridge does not know.
        invited = await as_bot(site, "POST", room_path(case_room, "/invite"), {"user_id": STRANGER})
        assert reason_of(invited) == NOT_REGISTERED
        room = await members(site, case_room)
        assert STRANGER not in room and GP not in room
    finally:
        await stranger.close()


async def test_nurse_cannot_open_the_room(site: Site, case_room: str, nurse: JsClient) -> None:
    # Give her every power the room has: what stops her below is the homeserver's module,
    # not the room's power levels.
    levels = await state(site, case_room, "m.room.power_levels")
    levels["users"] = {**levels.get("users", {}), NURSE: 100}
    raised = await as_bot(site, "PUT", room_path(case_room, "/state/m.room.power_levels/"), levels)
    assert raised.status_code == 200, raised.text

    attempts = [
        ("m.room.join_rules", {"join_rule": "public"}),
        ("m.room.join_rules", {"join_rule": "knock"}),
        ("m.room.history_visibility", {"history_visibility": "world_readable"}),
        ("m.room.history_visibility", {"history_visibility": "shared"}),
        ("m.room.guest_access", {"guest_access": "can_join"}),
        ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 1}),
    ]
    for event_type, content in attempts:
        cmd = {"cmd": "set_state", "roomId": case_room, "type": event_type, "content": content}
        assert await refusal(nurse, cmd) == NOT_OPENER, event_type
    # With power 100 she still cannot invite.
    invite = {"cmd": "invite", "roomId": case_room, "userId": STRANGER}
    assert await refusal(nurse, invite) == NOT_INVITER

    # Nor publish the room in the directory (a raw client of her own).
    async with httpx.AsyncClient(base_url=site.synapse.base_url, timeout=30) as http:
        login = await http.post(
            "/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": NURSE},
                "password": NURSE_PASSWORD,
            },
        )
        assert login.status_code == 200, login.text
        published = await http.put(
            f"/_matrix/client/v3/directory/list/room/{quote(case_room, safe='')}",
            json={"visibility": "public"},
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
        assert reason_of(published) == NOT_PUBLISHER

    # Everything else is hers to do: a topic, a message.
    topic = {"topic": "Casus WB · afspraken"}
    cmd = {"cmd": "set_state", "roomId": case_room, "type": "m.room.topic", "content": topic}
    await nurse.command(cmd)
    await nurse.send(case_room, "Afspraak gemaakt.")

    # The room is as closed as the bridge made it.
    assert (await state(site, case_room, "m.room.join_rules"))["join_rule"] == "invite"
    visibility = await state(site, case_room, "m.room.history_visibility")
    assert visibility["history_visibility"] == "invited"
    assert (await state(site, case_room, "m.room.guest_access"))["guest_access"] == "forbidden"
    assert await state(site, case_room, "m.room.encryption") == {
        "algorithm": "m.megolm.v1.aes-sha2"
    }


async def test_bot_still_invites(site: Site, case_room: str) -> None:
    gp = await JsClient.start(site.synapse.base_url, GP, GP_PASSWORD)
    try:
        invited = await as_bot(site, "POST", room_path(case_room, "/invite"), {"user_id": GP})
        assert invited.status_code == 200, invited.text
        joined = await gp.wait_for("joined", lambda e: e["roomId"] == case_room, timeout=60)
        assert joined["roomId"] == case_room
        assert (await members(site, case_room))[GP] == "join"
    finally:
        await gp.close()


async def test_bridge_unreachable_refuses(site: Site, case_room: str) -> None:
    """Fail closed: without the bridge's word nobody new gets in (last: it stops the bridge)."""
    path = room_path(case_room, "/invite")
    site.bridge.stop()
    try:
        invited = await as_bot(site, "POST", path, {"user_id": LATE_GP})
        assert reason_of(invited) == UNCONFIRMED
        log = (site.synapse.directory / "homeserver.log").read_text()
        assert f"did not answer for {LATE_GP}" in log
        assert site.as_token not in log
    finally:
        site.bridge.start()
    # A failure is not remembered: with the bridge back, the registered GP is let in.
    invited = await as_bot(site, "POST", path, {"user_id": LATE_GP})
    assert invited.status_code == 200, invited.text
