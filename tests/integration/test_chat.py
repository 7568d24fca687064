"""GPs and nurses in their own chat clients (matrix-js-sdk with Rust crypto): a GP starts
a case from a direct chat with the bot, the nurse and the GP meet in the encrypted case
room, room commands answer, closing makes the room read-only; a stranger is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient, JsClientError
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration
BOT = "@wijkbrug:localhost"


@pytest.fixture(scope="module")
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BridgeSite, SynapseInstance]]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-chat"))
    bridge.configure("delivery", {"max_attempts": 3, "backoff_initial_seconds": 0.2})
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url)
    bridge.start()
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Huisartsenpraktijk De Pijp")
    cli(
        "practitioner",
        "add",
        "--org",
        "01234567",
        "--name",
        "Dr. A. Jansen",
        "--agb",
        "01000001",
        "--matrix-id",
        "@gpchat:localhost",
    )
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli(
        "team",
        "add",
        "--provider",
        "12345678",
        "--name",
        "Oost",
        "--member",
        "@chatnurse:localhost",
    )
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    # A provider whose only nurse is on a homeserver that does not exist: nobody can be
    # invited.
    cli("org", "add", "provider", "--ura", "87654321", "--name", "Thuiszorg Leeg")
    cli(
        "team",
        "add",
        "--provider",
        "87654321",
        "--name",
        "Leeg",
        "--member",
        "@weg:nowhere.invalid",
    )
    cli(
        "route", "add", "--care-type", "ouderenzorg", "--pc4", "1091-1098", "--provider", "87654321"
    )
    for user in ("gpchat", "chatnurse", "stranger"):
        synapse.register(user, f"pw-{user}")
    yield bridge, synapse
    bridge.stop()


@pytest.fixture
async def people(
    site: tuple[BridgeSite, SynapseInstance],
) -> AsyncIterator[tuple[JsClient, JsClient]]:
    _, synapse = site
    gp = await JsClient.start(synapse.base_url, "@gpchat:localhost", "pw-gpchat")
    nurse = await JsClient.start(synapse.base_url, "@chatnurse:localhost", "pw-chatnurse")
    yield gp, nurse
    await gp.close()
    await nurse.close()


async def direct_chat(client: JsClient) -> str:
    result = await client.command({"cmd": "create_room", "invite": [BOT], "encrypted": True})
    return str(result["roomId"])


def from_bot(room_id: str, text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: bool(e["roomId"] == room_id and e["sender"] == BOT and text in e["body"])


async def test_gp_starts_a_case_from_chat_and_meets_the_nurse(
    people: tuple[JsClient, JsClient],
) -> None:
    gp, nurse = people
    dm = await direct_chat(gp)
    await gp.wait_for("message", from_bot(dm, "!nieuw"), timeout=60)  # the greeting
    await gp.send(dm, "!nieuw 1092AB tandzorg Mw. de Vries (12-03-1948), kijken")
    await gp.wait_for("message", from_bot(dm, "Onbekende zorgsoort"), timeout=60)
    await gp.send(
        dm, "!nieuw 1092AB wondzorg Mw. de Vries (12-03-1948), wondcontrole na ontslag --spoed"
    )
    started = await gp.wait_for("message", from_bot(dm, "gestart bij Thuiszorg Oost"), timeout=60)
    number = started["body"].split()[1]
    # Both meet in the encrypted case room; the first message carries the patient.
    first = await nurse.wait_for("message", lambda e: "wondcontrole" in e["body"], timeout=60)
    assert first["encrypted"] is True and first["sender"] == BOT
    assert "Dr. A. Jansen schrijft" in first["body"] and "12-03-1948" in first["body"]
    assert "[SPOED]" in first["body"] and number in first["body"]
    room = first["roomId"]
    await gp.wait_for("joined", lambda e: e["roomId"] == room, timeout=60)
    await gp.wait_for("message", lambda e: e["roomId"] == room and "wondcontrole" in e["body"])
    state = await nurse.wait_for("room_state", lambda e: e["roomId"] == room)
    assert "Vries" not in state["name"] and "Vries" not in state["topic"]
    # The GP and the nurse talk directly; commands answer in the room.
    await nurse.send(room, "Ik ga er vanmiddag heen.")
    await gp.wait_for("message", lambda e: "vanmiddag" in e["body"], timeout=60)
    await nurse.send(room, "!status")
    status = await nurse.wait_for("message", from_bot(room, "Doet mee"), timeout=60)
    assert "@chatnurse:localhost" in status["body"] and "@gpchat:localhost" in status["body"]
    await nurse.send(room, "!route")
    await nurse.wait_for("message", from_bot(room, "Thuiszorg Oost"), timeout=60)
    await gp.send(room, "!sluit")
    await nurse.wait_for("message", from_bot(room, "gesloten"), timeout=60)
    with pytest.raises(JsClientError, match="permission"):  # the room is read-only now
        await nurse.send(room, "nog iets")


async def test_a_stranger_is_refused_politely(site: tuple[BridgeSite, SynapseInstance]) -> None:
    _, synapse = site
    stranger = await JsClient.start(synapse.base_url, "@stranger:localhost", "pw-stranger")
    try:
        dm = await direct_chat(stranger)
        refusal = await stranger.wait_for("message", from_bot(dm, "niet in het regionale"))
        assert "Sorry" in refusal["body"]
    finally:
        await stranger.close()


async def test_a_case_no_nurse_can_be_invited_to_is_reported_to_the_gp(
    people: tuple[JsClient, JsClient],
) -> None:
    gp, _ = people
    dm = await direct_chat(gp)
    await gp.wait_for("message", from_bot(dm, "!nieuw"), timeout=60)
    await gp.send(dm, "!nieuw 1092AB ouderenzorg Dhr. Bakker (01-02-1940), valrisico bespreken")
    await gp.wait_for("message", from_bot(dm, "gestart bij Thuiszorg Leeg"), timeout=60)
    # No silent failure: after the retries she hears it where she asked.
    failed = await gp.wait_for("message", from_bot(dm, "kon niet worden afgeleverd"), timeout=90)
    assert "Thuiszorg Leeg" in failed["body"] and "Bakker" not in failed["body"]
