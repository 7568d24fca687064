"""The production topology (issue 8), started here from the real programs, without
containers: Synapse scaled out on PostgreSQL and Redis, from the configuration that
``bridge/deployment.py`` generates for ``deploy/synapse`` (only ports, database, Redis
and paths differ), and two Wijkbrug processes on one PostgreSQL database. Then the
journey: a practice posts FHIR Communications of four GPs (two ghosts on each bridge
process), the nurse (matrix-js-sdk, Rust crypto, syncing through the production proxy
rule: its /sync goes to the generic worker) decrypts them and replies, and the replies
come back through ``GET /fhir/Communication``.

::

    practice --POST /fhir--> bridge 0 | bridge 1 --(one PostgreSQL db)--> outbox by ghost
    bridge 0/1 --client API--> main --HTTP replication--> event_persister1 (writes events)
    nurse (js) --> proxy --/sync, keys/query--> generic_worker1;  --send, ...--> main
    main, workers <--Redis pub/sub (channel = server name)-->
    appservice1 --AS transactions--> bridge 0 (the registration's URL) --> reply
    practice <--GET /fhir/Communication-- bridge 1
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from bridge import deployment
from bridge.config import WORKER_INDEX_ENV, load_settings
from bridge.deployment import APPSERVICE_SENDER, EVENT_PERSISTER, GENERIC_WORKER, MAIN
from bridge.homeserver import free_port
from tests.conftest import PG_ADMIN_DSN
from tests.integration.test_end_to_end import communication, fhir_headers
from tests.integration.test_workers import DELIVERED, bsns
from tests.support.bridge import BridgeSite
from tests.support.jsclient import JsClient, Predicate
from tests.support.matrix_proxy import MatrixProxy
from tests.support.synapse_workers import (
    PostgresTarget,
    SynapseCluster,
    metric_sum,
    redis_command,
    scaled_site,
    synapse_database,
)

pytestmark = pytest.mark.integration

# The machine's Redis (no password); CI starts it if it is not running. Synapse's
# replication channels are named after the server name, not a Redis database (pub/sub
# ignores database numbers), so each run takes a server name of its own. Database 7 is
# this test's: Synapse keeps caches there (with an expiry) keyed by numbers of its own
# database, which is dropped after the run, so the test empties it before and after.
_REDIS = os.environ.get("WIJKBRUG_TEST_REDIS", "127.0.0.1:6379")
REDIS_HOST, REDIS_PORT = _REDIS.rpartition(":")[0], int(_REDIS.rpartition(":")[2])
REDIS_DBID = 7
NURSE_PASSWORD = "nurse-password-scaled"
COMMITTED = Path(__file__).resolve().parents[2] / "deploy" / "synapse"


def worker_of(agb: str) -> int:
    """Which of two bridge processes holds this GP's ghost (``Service._shard``)."""
    return (1 + zlib.crc32(f"wijkbrug_agb_{agb}".encode()) % 65521) % 2


def gps_per_worker(per_worker: int = 2) -> list[list[str]]:
    """AGB codes of GPs whose ghosts live on process 0 and on process 1."""
    found: list[list[str]] = [[], []]
    number = 1000001
    while min(len(f) for f in found) < per_worker:
        agb = f"0{number}"
        if len(found[worker_of(agb)]) < per_worker:
            found[worker_of(agb)].append(agb)
        number += 1
    return found


def assert_same_shape_as_committed(fragments: dict[str, str]) -> None:
    """The files this test runs Synapse with are deploy/synapse's, but for the site's own
    values (names, hosts, ports, database, Redis, paths): the same files, the same keys,
    the same process roles and the same Wijkbrug settings."""
    assert set(fragments) == {p.name for p in COMMITTED.iterdir()}
    for name, text in fragments.items():
        if not name.endswith(".yaml"):
            continue
        ours = yaml.safe_load(text)
        committed = yaml.safe_load((COMMITTED / name).read_text(encoding="utf-8"))
        assert list(ours) == list(committed), name
        for key in (
            "stream_writers",
            "notify_appservices_from_worker",
            "worker_app",
            "worker_name",
            "experimental_features",
            "retention",
            "sender_localpart",
            "rate_limited",
            "receive_ephemeral",
        ):
            assert ours.get(key) == committed.get(key), (name, key)
        if "modules" in committed:
            [module], [theirs] = ours["modules"], committed["modules"]
            assert module["module"] == theirs["module"]
            assert set(module["config"]) == set(theirs["config"])
        for listeners in ("listeners", "worker_listeners"):
            if listeners in committed:
                resources = [x.get("resources") for x in ours[listeners]]
                assert resources == [x.get("resources") for x in committed[listeners]], name


@dataclass
class Topology:
    synapse: SynapseCluster
    bridges: tuple[BridgeSite, BridgeSite]
    database: PostgresTarget
    server_name: str
    proxy_port: int
    token: str
    timings: dict[str, float] = field(default_factory=dict)

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


@pytest.fixture
def topology(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    began = time.monotonic()
    tmp = tmp_path_factory.mktemp("scaled")
    server_name = f"wb{uuid.uuid4().hex[:8]}.localhost"
    with synapse_database(PG_ADMIN_DSN) as database:
        first = BridgeSite.prepare(tmp / "bridge0", database_url=postgres_url)
        proxy_port = free_port()
        site = scaled_site(
            server_name,
            first.url,  # the registration's URL: process 0 receives the transactions
            directory=tmp / "synapse",
            database=database,
            redis_host=REDIS_HOST,
            redis_port=REDIS_PORT,
            redis_dbid=REDIS_DBID,
            public_baseurl=f"http://127.0.0.1:{proxy_port}/",
        )
        synapse = SynapseCluster(site, tmp / "synapse")
        # The site's secrets; the bridge reads the appservice tokens from the same files.
        synapse.write_secrets()
        first.configure("homeserver", {"server_name": server_name, "url": synapse.main_url})
        first.configure(
            "appservice",
            {
                "as_token_path": str(synapse.secrets / "wijkbrug_as_token"),
                "hs_token_path": str(synapse.secrets / "wijkbrug_hs_token"),
            },
        )
        # As deploy/ runs them: one config with workers.count, each process's index from
        # $WIJKBRUG_WORKER_INDEX.
        first.configure("workers", {"count": 2})
        first.env[WORKER_INDEX_ENV] = "0"
        appservice = load_settings(first.config_path).appservice
        fragments = synapse.write_config(
            deployment.site_settings(site, appservice, token_dir=synapse.secrets)
        )
        assert_same_shape_as_committed(fragments)
        second = first.another_worker(tmp / "bridge1", index=1, index_from_environment=True)
        try:
            redis_command(REDIS_HOST, REDIS_PORT, "FLUSHDB", db=REDIS_DBID)
            started = time.monotonic()
            synapse.start()
            timings = {"synapse": time.monotonic() - started}
            started = time.monotonic()
            first.start()
            second.start()
            timings["bridges"] = time.monotonic() - started
            cli = first.cli
            cli("org", "add", "practice", "--agb", "01234567", "--name", "Gezondheidscentrum")
            cli("org", "add", "provider", "--ura", "12345678", "--name", "Thuiszorg Oost")
            nurse = synapse.register("nurse1", NURSE_PASSWORD)
            cli("team", "add", "--provider", "12345678", "--name", "Oost", "--member", nurse)
            route = ("--care-type", "wondzorg", "--pc4", "1091-1098", "--provider", "12345678")
            cli("route", "add", *route)
            token = cli("client", "add", "--org", "01234567", "--name", "his").stdout.split()[-1]
            timings["setup"] = time.monotonic() - began
            yield Topology(
                synapse, (first, second), database, server_name, proxy_port, token, timings
            )
        finally:
            second.stop()
            first.stop()
            synapse.stop()
            redis_command(REDIS_HOST, REDIS_PORT, "FLUSHDB", db=REDIS_DBID)


def gp_message(identifier: str, agb: str, bsn: str, text: str) -> dict[str, Any]:
    body = communication(identifier, bsn=bsn, text=text)
    gp = body["contained"][1]
    gp["identifier"][0]["value"] = agb
    gp["name"] = [{"text": f"Huisarts {agb}", "family": f"Huisarts {agb}"}]
    return body


def containing(text: str) -> Predicate:
    return lambda event: text in event["body"]


async def test_scaled_out_topology_end_to_end(topology: Topology) -> None:
    t = topology
    synapse = t.synapse
    bridges = t.bridges
    began = time.monotonic()
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    on_worker = gps_per_worker()
    patients = bsns(2)
    # Two cases (patients); each gets a message from a GP of process 0 and one of process 1.
    plan = [
        (agb, patients[case], f"Scaled bericht {case}-{w} van huisarts {agb}")
        for case in (0, 1)
        for w, agb in ((0, on_worker[0][case]), (1, on_worker[1][case]))
    ]

    async with MatrixProxy(t.proxy_port, synapse.url(MAIN), synapse.url(GENERIC_WORKER)) as proxy:
        nurse = await JsClient.start(proxy.url, t.user("nurse1"), NURSE_PASSWORD)
        try:
            ids: dict[str, str] = {}
            async with httpx.AsyncClient(timeout=30) as http:
                for i, (agb, bsn, text) in enumerate(plan):
                    bridge = bridges[i % 2]  # either process accepts
                    posted = await http.post(
                        f"{bridge.url}/fhir/Communication",
                        content=json.dumps(gp_message(f"scaled-{i}", agb, bsn, text)),
                        headers=fhir_headers(t.token),
                    )
                    assert posted.status_code == 201, posted.text
                    ids[text] = posted.json()["id"]

                # Every message reaches the nurse, encrypted, from its GP's ghost.
                rooms: dict[str, set[str]] = {}
                for agb, _, text in plan:
                    msg = await nurse.wait_for("message", containing(text), timeout=90)
                    assert msg["encrypted"] is True, msg
                    assert msg["sender"] == t.user(f"wijkbrug_agb_{agb}")
                    rooms.setdefault(msg["roomId"], set()).add(msg["sender"])
                assert len(rooms) == 2 and all(len(s) == 2 for s in rooms.values()), rooms
                delivered_in = time.monotonic() - began

                # She answers in each case room; the practice fetches the answers from
                # process 1, though process 0 received them: one database.
                answers = {room: f"Antwoord in {room[:8]}: morgen langs" for room in rooms}
                for room, answer in answers.items():
                    await nurse.send(room, answer)
                replies: list[dict[str, Any]] = []
                for _ in range(180):
                    search = await http.get(
                        f"{bridges[1].url}/fhir/Communication",
                        params={"_lastUpdated": f"gt{since}", "_count": "50"},
                        headers=fhir_headers(t.token),
                    )
                    assert search.status_code == 200, search.text
                    replies = [
                        e["resource"]
                        for e in search.json().get("entry", [])
                        if e["resource"].get("inResponseTo")
                    ]
                    if len(replies) == len(answers):
                        break
                    await asyncio.sleep(0.5)
                assert len(replies) == len(answers), bridges[0].log()[-3000:]
                texts = {r["payload"][0]["contentString"] for r in replies}
                assert texts == set(answers.values())
                originals = {f"Communication/{i}" for i in ids.values()}
                for reply in replies:
                    [target] = reply["inResponseTo"]
                    assert target["reference"] in originals
                    assert t.user("nurse1") in json.dumps(reply)
            answered_in = time.monotonic() - began
        finally:
            await nurse.close()

    # Both bridge processes delivered: each its own GPs' messages, none twice.
    by_bridge = [dict(DELIVERED.findall(b.log())) for b in bridges]
    assert set(by_bridge[0]).isdisjoint(by_bridge[1])
    assert set(by_bridge[0]) | set(by_bridge[1]) == set(ids.values())
    for w in (0, 1):
        mine = {ids[text] for agb, _, text in plan if agb in on_worker[w]}
        assert set(by_bridge[w]) == mine, (w, by_bridge)

    # The nurse's client synced through the generic worker; everything else went to main.
    assert proxy.count("generic_worker", "/sync") > 0
    assert proxy.count("main", "/send/") >= len(answers)
    worker_metrics = synapse.metrics(GENERIC_WORKER)
    synced = metric_sum(
        worker_metrics, "synapse_http_server_requests_received_total", servlet="SyncRestServlet"
    )
    assert synced > 0, "the generic worker served no /sync"

    # The event persister wrote the room events (and nobody else did).
    dsn = f"postgresql://{t.database.user}@{t.database.host}:{t.database.port}/{t.database.dbname}"
    with psycopg.connect(dsn) as conn:
        writers: dict[str, int] = dict(
            conn.execute(
                "SELECT instance_name, count(*) FROM events GROUP BY instance_name"
            ).fetchall()
        )
        encrypted = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'm.room.encrypted'"
        ).fetchone()
    assert set(writers) == {EVENT_PERSISTER.name}, writers
    assert encrypted is not None and encrypted[0] >= len(plan) + len(answers)

    # The appservice sender, not main, sent the transactions to the bridge.
    sender_txns = metric_sum(
        synapse.metrics(APPSERVICE_SENDER), "synapse_appservice_api_sent_transactions_total"
    )
    main_txns = metric_sum(synapse.metrics(MAIN), "synapse_appservice_api_sent_transactions_total")
    assert sender_txns > 0 and main_txns == 0, (sender_txns, main_txns)

    # Every Synapse process is subscribed to the site's replication channel in Redis.
    numsub = redis_command(REDIS_HOST, REDIS_PORT, "PUBSUB", "NUMSUB", t.server_name)
    assert numsub == [t.server_name.encode(), len(synapse.site.processes)], numsub

    ports = ", ".join(
        f"{p.name} "
        + "/".join(
            str(port)
            for port in (p.http_port, p.replication_port, p.metrics_port)
            if port is not None
        )
        + f" (up in {synapse.startup_seconds[p.name]:.1f} s)"
        for p in synapse.site.processes
    )
    print(
        f"\nscaled topology on {t.server_name}: Synapse {ports} (PostgreSQL "
        f"{t.database.dbname}, Redis {REDIS_HOST}:{REDIS_PORT} db {REDIS_DBID}); proxy "
        f"{t.proxy_port}; bridges {bridges[0].port}/{bridges[1].port} "
        f"(delivered {len(by_bridge[0])}/{len(by_bridge[1])}). Synapse up in "
        f"{t.timings['synapse']:.1f} s, bridges {t.timings['bridges']:.1f} s, setup "
        f"{t.timings['setup']:.1f} s; {len(plan)} messages in the nurse's client after "
        f"{delivered_in:.1f} s, {len(answers)} replies back after {answered_in:.1f} s; "
        f"generic worker /sync {int(synced)}, AS txns by {APPSERVICE_SENDER.name} "
        f"{int(sender_txns)}, events written by {EVENT_PERSISTER.name} "
        f"{writers[EVENT_PERSISTER.name]}"
    )
