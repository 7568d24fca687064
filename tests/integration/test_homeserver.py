"""A real Synapse, and two matrix-js-sdk clients (Element's crypto) talking E2EE through it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from bridge.homeserver import register_user
from tests.support.jsclient import Event, JsClient
from tests.support.synapse import SynapseInstance

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def test_synapse_answers_and_register_user_is_idempotent(synapse: SynapseInstance) -> None:
    localpart = f"carol_{uuid.uuid4().hex[:8]}"
    first = register_user(synapse.base_url, synapse.shared_secret, localpart, PASSWORD)
    again = synapse.register(localpart, "another password")
    assert first == again == f"@{localpart}:localhost"


@pytest.fixture
async def alice_and_bob(synapse: SynapseInstance) -> AsyncIterator[tuple[JsClient, JsClient]]:
    suffix = uuid.uuid4().hex[:8]
    alice_id = synapse.register(f"alice_{suffix}", PASSWORD)
    bob_id = synapse.register(f"bob_{suffix}", PASSWORD)
    alice = await JsClient.start(synapse.base_url, alice_id, PASSWORD, auto_join=False)
    try:
        bob = await JsClient.start(synapse.base_url, bob_id, PASSWORD, auto_join=True)
        try:
            yield alice, bob
        finally:
            await bob.close()
    finally:
        await alice.close()


async def test_two_js_clients_exchange_encrypted_messages(
    alice_and_bob: tuple[JsClient, JsClient],
) -> None:
    alice, bob = alice_and_bob
    created = await alice.command(
        {"cmd": "create_room", "invite": [bob.user_id], "encrypted": True, "name": "Casus 1"}
    )
    room_id = str(created["roomId"])

    def in_room(event: Event) -> bool:
        return event.get("roomId") == room_id

    invite = await bob.wait_for("invite", in_room)
    assert invite["inviter"] == alice.user_id
    await bob.wait_for("joined", in_room)
    state = await bob.wait_for("room_state", in_room)
    assert state["encryption"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert state["name"] == "Casus 1"

    # Sent after bob joined; alice's client learns of the join from its own sync, and
    # would share the key with invited members anyway (history_visibility "shared").
    event_id = await alice.send(room_id, "Graag wondzorg vanaf maandag")
    received = await bob.wait_for("message", lambda e: e["eventId"] == event_id)
    assert received["encrypted"] is True
    assert received["sender"] == alice.user_id
    assert received["body"] == "Graag wondzorg vanaf maandag"
    assert received["content"]["msgtype"] == "m.text"

    reply_id = await bob.send(room_id, "Team Oost neemt het op")
    reply = await alice.wait_for("message", lambda e: e["eventId"] == reply_id)
    assert reply["encrypted"] is True
    assert reply["sender"] == bob.user_id
    assert reply["body"] == "Team Oost neemt het op"

    await bob.command({"cmd": "read", "roomId": room_id, "eventId": event_id})
    assert not [e for e in alice.events + bob.events if e["event"] == "undecryptable"]


async def test_invited_member_reads_messages_sent_before_joining(synapse: SynapseInstance) -> None:
    """A case's first message goes out while the nurse is only invited; she reads it later."""
    suffix = uuid.uuid4().hex[:8]
    gp_id = synapse.register(f"gp_{suffix}", PASSWORD)
    nurse_id = synapse.register(f"nurse_{suffix}", PASSWORD)
    gp = await JsClient.start(synapse.base_url, gp_id, PASSWORD, auto_join=False)
    nurse = await JsClient.start(synapse.base_url, nurse_id, PASSWORD, auto_join=False)
    try:
        created = await gp.command({"cmd": "create_room", "invite": [nurse_id]})
        room_id = str(created["roomId"])
        event_id = await gp.send(room_id, "Casus: wondzorg, zie dossier")
        await nurse.wait_for("invite", lambda e: e["roomId"] == room_id)
        await nurse.command({"cmd": "join", "roomId": room_id})
        message = await nurse.wait_for("message", lambda e: e["eventId"] == event_id)
        assert message["encrypted"] is True
        assert message["body"] == "Casus: wondzorg, zie dossier"
    finally:
        await nurse.close()
        await gp.close()
