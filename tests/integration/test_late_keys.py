"""Provoking "the bridge hasn't received the decryption keys" with a real client.

The nurse's client is matrix-js-sdk with Rust crypto (Element Web's stack). Three ways her
room key can fail to reach the bridge's bot device:

- it comes late (a to-device message lagging behind the room event): the bridge retries
  with backoff and passes the reply on once, when the key is there;
- she shares keys only with cross-signed devices for a while (Element's "exclude insecure
  devices"; the bot's device is not cross-signed) and then turns that off: the SDK then
  shares the room's *existing* megolm session with the bot, but from its current ratchet
  index on, so what she sent before stays undecryptable for good; the bridge passes on
  what it can read and says in the room that the other message did not go through;
- she never shares: the bridge gives up after ``delivery.decrypt_timeout_seconds`` with a
  notice in the room, and the practice system never sees a half message.

    practice --FHIR--> bridge --ghost--> case room --> nurse (js)
    nurse (js) --reply, key withheld/late--> bridge: retry ... deliver | notice in the room
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.test_end_to_end import NURSE_PASSWORD, communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration

# The bridge tries an undecryptable event at once, then after pauses of 0.5, 1, 2, 4, 8,
# 16, 30, ... s (each try up to ~1 s late: the event worker naps at most 1 s), and gives up
# at the first try past the timeout. With 15 s that is the 6th try, some 15.5-21 s after
# the event arrived; the 5th (7.5-11.5 s) is clear of the timeout, so the moment is stable.
DECRYPT_TIMEOUT = 15.0
BACKOFF_CAP = 30.0  # the bridge's longest pause between two attempts
GIVE_UP_WITHIN = DECRYPT_TIMEOUT + BACKOFF_CAP + 15  # the latest a notice may come
QUIET = 5.0  # how long "nothing reached the practice" is watched

NURSE = "@nurse1:localhost"
BOT = "@wijkbrug:localhost"
NOTICE = "kon Wijkbrug niet ontsleutelen"


@dataclass
class Site:
    bridge: BridgeSite
    synapse: SynapseInstance
    practice_token: str


@pytest.fixture(scope="module")
def site(
    synapse_factory: SynapseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    bridge = BridgeSite.prepare(tmp_path_factory.mktemp("wijkbrug-late-keys"))
    bridge.configure("delivery", {"decrypt_timeout_seconds": DECRYPT_TIMEOUT})
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url)
    bridge.start()
    bridge.cli(
        "org", "add", "practice", "--agb", "01234567", "--name", "Huisartsenpraktijk De Pijp"
    )
    bridge.cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    bridge.cli(
        "team",
        "add",
        "--provider",
        "12345678",
        "--name",
        "Team Watergraafsmeer",
        "--member",
        NURSE,
    )
    bridge.cli(
        "route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678"
    )
    token = bridge.cli("client", "add", "--org", "01234567", "--name", "his-test")
    synapse.register("nurse1", NURSE_PASSWORD)
    yield Site(bridge, synapse, token.stdout.strip().splitlines()[-1])
    bridge.stop()


@pytest.fixture
async def nurse(site: Site) -> AsyncIterator[JsClient]:
    """A fresh device of nurse1, sharing keys with every device (Element's default)."""
    client = await JsClient.start(site.synapse.base_url, NURSE, NURSE_PASSWORD)
    yield client
    await client.close()


@pytest.fixture
async def http(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.bridge.url, timeout=30) as client:
        yield client


@dataclass
class Case:
    """A practice's message in its own case room (each test has its own patient)."""

    communication_id: str
    room_id: str


async def open_case(
    site: Site, http: httpx.AsyncClient, nurse: JsClient, identifier: str, bsn: str
) -> Case:
    text = f"Wondcontrole graag ({identifier})"
    posted = await http.post(
        "/fhir/Communication",
        content=json.dumps(communication(identifier, bsn=bsn, text=text)),
        headers=fhir_headers(site.practice_token),
    )
    assert posted.status_code == 201, posted.text
    msg = await nurse.wait_for("message", lambda e: text in e["body"], timeout=60)
    return Case(posted.json()["id"], msg["roomId"])


async def reply_texts(site: Site, http: httpx.AsyncClient, case: Case) -> list[str]:
    """The texts of the replies to the case's message the practice can fetch, in the
    order of the search (oldest update first)."""
    search = await http.get(
        "/fhir/Communication",
        params={"_count": "100"},
        headers=fhir_headers(site.practice_token),
    )
    assert search.status_code == 200, search.text
    bundle = search.json()
    assert "next" not in {link["relation"] for link in bundle.get("link", [])}
    reference = [{"reference": f"Communication/{case.communication_id}"}]
    return [
        str(entry["resource"]["payload"][0]["contentString"])
        for entry in bundle.get("entry", [])
        if entry["resource"].get("inResponseTo") == reference
    ]


async def replies_once_there(
    site: Site, http: httpx.AsyncClient, case: Case, texts: set[str]
) -> list[str]:
    """Poll (for up to a minute) until every one of ``texts`` is among the case's replies;
    return all of them."""
    deadline = time.monotonic() + 60
    while True:
        got = await reply_texts(site, http, case)
        if texts <= set(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"replies {got}, waited for {sorted(texts)}\n{site.bridge.log()[-3000:]}"
            )
        await asyncio.sleep(0.5)


async def stays_without_replies(
    site: Site, http: httpx.AsyncClient, case: Case, seconds: float = QUIET
) -> None:
    """For ``seconds``, the practice sees no reply to the case's message."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await reply_texts(site, http, case) == []
        await asyncio.sleep(0.5)


def notices(client: JsClient, room_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in client.events
        if e["event"] == "message"
        and e["roomId"] == room_id
        and e["sender"] == BOT
        and NOTICE in e["body"]
    ]


async def test_a_late_key_is_waited_for_and_the_reply_delivered_once(
    site: Site, http: httpx.AsyncClient, nurse: JsClient
) -> None:
    case = await open_case(site, http, nurse, "late-keys-1", "999910000")
    await nurse.delay_room_keys(6)
    late = await nurse.send_message(case.room_id, "Antwoord met een late sleutel")
    await nurse.delay_room_keys(0)
    assert late.session_id is not None

    # The event is there, its key is not: the bridge cannot pass anything on yet ...
    await stays_without_replies(site, http, case, seconds=3)
    # ... and once the key arrives, the next retry does, exactly once.
    got = await replies_once_there(site, http, case, {"Antwoord met een late sleutel"})
    assert got == ["Antwoord met een late sleutel"]
    await asyncio.sleep(2)  # no second copy from a later retry
    assert await reply_texts(site, http, case) == ["Antwoord met een late sleutel"]
    assert notices(nurse, case.room_id) == []
    # The bridge did try before the key was there (nio logs a failed megolm decryption
    # with the session's id), so this was the retry path, not a fast key.
    assert late.session_id in site.bridge.log()


async def test_keys_shared_after_a_withheld_message(
    site: Site, http: httpx.AsyncClient, nurse: JsClient
) -> None:
    case = await open_case(site, http, nurse, "late-keys-2", "999910012")

    # "Exclude insecure devices": her key goes to cross-signed devices only, not to the bot.
    await nurse.set_isolation_mode("only_signed")
    first = await nurse.send_message(case.room_id, "Antwoord A: wond ziet er rustig uit")
    sent_first = time.monotonic()
    await stays_without_replies(site, http, case)

    # She turns it off again and answers once more: now the bot gets the key.
    await nurse.set_isolation_mode("all")
    second = await nurse.send_message(case.room_id, "Antwoord B: morgen weer langs")
    # The Rust crypto did not start a new megolm session: it shared the room's current one
    # with the bot's device, but exported at its current ratchet index (that of B). Megolm
    # cannot be decrypted backwards, so A is beyond the bot's reach for good (nor does the
    # SDK answer another user's key request below the index it shared).
    assert first.session_id is not None and first.session_id == second.session_id

    # B reaches the practice, once ...
    assert await replies_once_there(site, http, case, {"Antwoord B: morgen weer langs"}) == [
        "Antwoord B: morgen weer langs"
    ]
    # ... and for A the room is told, after the bridge waited out the timeout. She reads the
    # notice: her client decrypts the bot's messages again.
    notice = await nurse.wait_for(
        "message",
        lambda e: e["roomId"] == case.room_id and e["sender"] == BOT and NOTICE in e["body"],
        timeout=GIVE_UP_WITHIN,
    )
    waited = time.monotonic() - sent_first
    assert DECRYPT_TIMEOUT <= waited <= GIVE_UP_WITHIN, waited
    assert notice["content"]["msgtype"] == "m.notice" and notice["encrypted"] is True
    assert f"Dit bericht van {NURSE} kon Wijkbrug niet ontsleutelen" in notice["body"]
    assert "opnieuw" in notice["body"]  # what she can do about it
    # ... as a reply to A, so she knows which of her messages to send again.
    assert notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == first.event_id

    # A never reached the practice, in part or in whole; B exactly once; one notice only.
    assert await reply_texts(site, http, case) == ["Antwoord B: morgen weer langs"]
    assert len(notices(nurse, case.room_id)) == 1


async def test_keys_never_shared_end_in_a_notice_and_nothing_for_the_practice(
    site: Site, http: httpx.AsyncClient, nurse: JsClient
) -> None:
    # A second device of the same nurse, left at "share with all devices", reads the room:
    # while "exclude insecure devices" is on, her own client does not decrypt the bot's
    # messages either (the bot's device is not cross-signed).
    second_device = await JsClient.start(
        site.synapse.base_url, NURSE, NURSE_PASSWORD, auto_join=False
    )
    try:
        case = await open_case(site, http, nurse, "late-keys-3", "999910024")
        await nurse.set_isolation_mode("only_signed")
        await nurse.send_message(case.room_id, "Antwoord C: graag een belletje")
        sent = time.monotonic()
        await stays_without_replies(site, http, case)

        notice = await second_device.wait_for(
            "message",
            lambda e: e["roomId"] == case.room_id and e["sender"] == BOT and NOTICE in e["body"],
            timeout=GIVE_UP_WITHIN,
        )
        waited = time.monotonic() - sent
        assert DECRYPT_TIMEOUT <= waited <= GIVE_UP_WITHIN, waited
        assert f"Dit bericht van {NURSE} kon Wijkbrug niet ontsleutelen" in notice["body"]
        assert notice["encrypted"] is True

        # The notice reached her device too, but in this mode it stays unreadable there.
        unreadable = await nurse.wait_for(
            "undecryptable", lambda e: e["eventId"] == notice["eventId"], timeout=40
        )
        assert unreadable["sender"] == BOT
        assert unreadable["reason"] == "UNSIGNED_SENDER_DEVICE", unreadable
        assert notices(nurse, case.room_id) == []

        # The bridge gave up for good: no Communication for C, not later either.
        await stays_without_replies(site, http, case, seconds=3)
        assert len(notices(second_device, case.room_id)) == 1
    finally:
        await second_device.close()
