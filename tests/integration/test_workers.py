"""Several bridge processes on one PostgreSQL database (the machine's), sharing the
outbox: 1,000 messages from 20 GPs about 100 patients are each delivered exactly once,
none is lost, and both processes do part of the work. Each GP's ghost (an E2EE device)
belongs to one process; process 0 also runs the bot.

    practice --POST--> worker 0 or worker 1 (alternating) --> PostgreSQL outbox
    worker 0: shards 0, 2, 4, ...  \\
    worker 1: shards 1, 3, 5, ...  /--> Synapse (its SQLite is read to count the events)
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.test_end_to_end import communication, fhir_headers
from tests.support.bridge import BridgeSite
from tests.support.synapse import SynapseFactory, SynapseInstance

pytestmark = pytest.mark.integration

MESSAGES = 1000
GPS = 20
PATIENTS = 100
DELIVERED = re.compile(r"delivered communication ([0-9a-f-]{36}) as (\S+)")


def bsns(count: int) -> list[str]:
    """Valid BSNs (the 11-test) from the test range."""
    out: list[str] = []
    number = 999990000
    while len(out) < count:
        digits = [int(c) for c in f"{number:09d}"]
        if (
            sum(w * d for w, d in zip(range(9, 1, -1), digits[:8], strict=True)) - digits[8]
        ) % 11 == 0:
            out.append(f"{number:09d}")
        number += 1
    return out


@pytest.fixture
def workers(
    synapse_factory: SynapseFactory, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[BridgeSite, BridgeSite, SynapseInstance, str]]:
    first = BridgeSite.prepare(tmp_path / "worker0")
    synapse = synapse_factory(appservice_files=[first.registration_path])
    first.point_at(synapse.base_url, database_url=postgres_url)
    first.configure("workers", {"count": 2, "index": 0})
    first.configure("http", {"client_rate_limit": None})  # one client, as fast as it can
    second = first.another_worker(tmp_path / "worker1", index=1)
    first.start()
    second.start()
    cli = first.cli
    cli("org", "add", "practice", "--agb", "01234567", "--name", "Gezondheidscentrum")
    cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
    cli("team", "add", "--provider", "12345678", "--name", "Oost", "--member", "@w1:localhost")
    cli("route", "add", "--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
    token = cli("client", "add", "--org", "01234567", "--name", "his").stdout.split()[-1]
    try:
        yield first, second, synapse, token
    finally:
        second.stop()
        first.stop()


def message(i: int, patients: list[str]) -> dict[str, object]:
    body = communication(f"w-{i}", bsn=patients[i % PATIENTS], text=f"bericht-{i}")
    gp = 1000001 + i % GPS  # 20 GPs, so 20 ghosts spread over the two processes
    body["contained"][1]["identifier"][0]["value"] = f"0{gp}"
    return body


async def test_two_workers_share_the_outbox_without_duplicates_or_losses(
    workers: tuple[BridgeSite, BridgeSite, SynapseInstance, str], postgres_url: str
) -> None:
    first, second, synapse, token = workers
    patients = bsns(PATIENTS)
    started = time.monotonic()
    ids: list[str] = []
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        queue = iter(range(MESSAGES))

        async def sender() -> None:
            for i in queue:
                http = one if i % 2 else two  # either process accepts
                resp = await http.post(
                    "/fhir/Communication",
                    content=json.dumps(message(i, patients)),
                    headers=fhir_headers(token),
                )
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["id"])

        await asyncio.gather(*(sender() for _ in range(8)))
    accepted = time.monotonic() - started

    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + 600
    while True:
        with psycopg.connect(dsn) as conn:
            waiting = conn.execute("SELECT count(*) FROM outbox WHERE state <> 'done'").fetchone()
        assert waiting is not None
        if waiting[0] == 0:
            break
        assert time.monotonic() < deadline, f"{waiting[0]} still undelivered"
        await asyncio.sleep(2)
    delivered = time.monotonic() - started

    # Which process delivered what, from each one's own log.
    by_worker = [dict(DELIVERED.findall(site.log())) for site in (first, second)]
    counts = [len(d) for d in by_worker]
    assert set(by_worker[0]).isdisjoint(by_worker[1])  # never both
    assert set(by_worker[0]) | set(by_worker[1]) == set(ids)  # nothing lost
    assert min(counts) > MESSAGES // 10, counts  # work spread over both
    # Exactly once in the rooms: the homeserver holds one encrypted event per message.
    events = {eid for d in by_worker for eid in d.values()}
    db = sqlite3.connect(synapse.directory / "homeserver.db")
    try:
        rows = db.execute(
            "SELECT event_id, sender FROM events WHERE type = 'm.room.encrypted'"
        ).fetchall()
    finally:
        db.close()
    ghost_events = [eid for eid, sender in rows if sender.startswith("@wijkbrug_agb_")]
    assert len(ghost_events) == MESSAGES and set(ghost_events) == events
    senders = Counter(sender for _, sender in rows if sender.startswith("@wijkbrug_agb_"))
    assert len(senders) == GPS
    print(
        f"\n{MESSAGES} messages, {GPS} GPs, {PATIENTS} cases, 2 workers: accepted in "
        f"{accepted:.0f} s, all delivered after {delivered:.0f} s; per worker {counts}; "
        "duplicates 0, lost 0"
    )
