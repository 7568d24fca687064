"""Crash safety on real parts: kill -9 the bridge in the middle of a burst of inbound FHIR
messages, start it again, and every message that got a 2xx is in its case room exactly
once; a message that got no answer is either absent or delivered exactly once as well.
The same for a burst of a nurse's answers flowing to the practice system. Runs on the
machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_end_to_end import communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration

BURST = 500
PATIENTS = ["999911120", "999990019", "999990020", "999990032", "999990044"]
MARK = re.compile(r"burst-(\d+)\b")


@pytest.fixture
def stack(
    synapse_factory: SynapseFactory, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[BridgeSite, SynapseInstance, str]]:
    bridge = BridgeSite.prepare(tmp_path / "wijkbrug")
    # One practice system bursting as fast as it can: its rate limit is not under test.
    bridge.configure("http", {"client_rate_limit": None})
    synapse = synapse_factory(appservice_files=[bridge.registration_path])
    bridge.point_at(synapse.base_url, database_url=postgres_url)
    bridge.start()
    cli = bridge.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Praktijk")
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("team", "add", "--provider", "12345678", "--name", "Team", "--member", "@crash1:localhost")
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    token = cli("client", "add", "--org", "01234567", "--name", "his").stdout
    synapse.register("crash1", "pw-crash-1")
    try:
        yield bridge, synapse, token.strip().splitlines()[-1]
    finally:
        bridge.stop()


async def test_kill_minus_nine_mid_burst_loses_and_duplicates_nothing(
    stack: tuple[BridgeSite, SynapseInstance, str],
) -> None:
    bridge, synapse, token = stack
    nurse = await JsClient.start(synapse.base_url, "@crash1:localhost", "pw-crash-1")
    acknowledged: set[int] = set()
    statuses: Counter[int] = Counter()
    answered = 0
    killed = asyncio.Event()

    async def post(http: httpx.AsyncClient, i: int) -> None:
        nonlocal answered
        body = communication(f"burst-{i}", bsn=PATIENTS[i % len(PATIENTS)], text=f"burst-{i}")
        try:
            resp = await http.post(
                "/fhir/Communication", content=json.dumps(body), headers=fhir_headers(token)
            )
        except httpx.HTTPError:
            return  # no answer: the bridge died under this request
        statuses[resp.status_code] += 1
        if resp.status_code in (200, 201):
            acknowledged.add(i)
        answered += 1
        if answered == BURST // 3 and not killed.is_set():
            killed.set()
            assert bridge.process is not None
            bridge.process.kill()  # SIGKILL: no shutdown, no flush

    try:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
            queue = iter(range(BURST))

            async def sender() -> None:
                for i in queue:
                    await post(http, i)

            await asyncio.gather(*(sender() for _ in range(8)))
        assert killed.is_set() and 0 < len(acknowledged) < BURST
        # Concurrent first messages of one case must not trip over each other (no 5xx).
        assert set(statuses) <= {200, 201}, statuses
        bridge.process = None
        bridge.start()
        # What the bridge holds now: acknowledged ones must all be there.
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
            stored: set[int] = set()
            url: str | None = "/fhir/Communication?_count=1000"
            while url:
                page = (await http.get(url, headers=fhir_headers(token))).json()
                for entry in page.get("entry", []):
                    for ident in entry["resource"].get("identifier", []):
                        if (m := MARK.fullmatch(ident.get("value", ""))) is not None:
                            stored.add(int(m.group(1)))
                nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
                url = nxt[0].split(bridge.url, 1)[1] if nxt else None
        assert acknowledged <= stored

        def delivered() -> Counter[int]:
            return Counter(
                int(m.group(1))
                for e in nurse.events
                if e["event"] == "message" and (m := MARK.search(e["body"])) is not None
            )

        for _ in range(240):
            if set(delivered()) >= stored:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # room for a duplicate to show up
        counts = delivered()
        assert set(counts) == stored, sorted(stored - set(counts))[:10]
        duplicates = {i: n for i, n in counts.items() if n > 1}
        assert duplicates == {}
        print(
            f"\nkill -9 mid-burst: {BURST} posts, {len(acknowledged)} acknowledged before the "
            f"kill, {len(stored)} stored, all delivered once ({sum(counts.values())} events)"
        )
    finally:
        await nurse.close()


REPLIES = 100
ANSWER = re.compile(r"antwoord-(\d+)$")


async def test_kill_minus_nine_mid_reply_burst_loses_and_duplicates_nothing(
    stack: tuple[BridgeSite, SynapseInstance, str],
) -> None:
    """The other direction: a nurse answers in a burst while the bridge is killed; every
    answer reaches the practice system exactly once after the restart (the homeserver
    keeps the transactions the dead bridge never acknowledged, and resends them)."""
    bridge, synapse, token = stack
    nurse = await JsClient.start(synapse.base_url, "@crash1:localhost", "pw-crash-1")
    try:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
            posted = await http.post(
                "/fhir/Communication",
                content=json.dumps(communication("burst-q", text="Vraag voor de burst")),
                headers=fhir_headers(token),
            )
            assert posted.status_code == 201
        question = await nurse.wait_for("message", lambda e: "burst" in e["body"], timeout=60)
        room = question["roomId"]
        for i in range(REPLIES):
            if i == REPLIES // 3:
                assert bridge.process is not None
                bridge.process.kill()  # SIGKILL in the middle of the stream
                bridge.process.wait()
            await nurse.send(room, f"antwoord-{i}")
        bridge.process = None
        bridge.start()

        async def replies() -> Counter[int]:
            found: Counter[int] = Counter()
            async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as http:
                page = await http.get(
                    "/fhir/Communication", params={"_count": "1000"}, headers=fhir_headers(token)
                )
            for entry in page.json().get("entry", []):
                for payload in entry["resource"].get("payload", []):
                    text = payload.get("contentString", "")
                    if (m := ANSWER.fullmatch(text)) is not None:
                        found[int(m.group(1))] += 1
            return found

        for _ in range(240):
            if len(await replies()) == REPLIES:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # room for a duplicate to show up
        counts = await replies()
        assert set(counts) == set(range(REPLIES)), sorted(set(range(REPLIES)) - set(counts))
        assert {i: n for i, n in counts.items() if n > 1} == {}
        print(
            f"\nreply burst: {REPLIES} answers, bridge killed after {REPLIES // 3}: "
            "all reached the practice once"
        )
    finally:
        await nurse.close()
