"""The NEN 7513 audit trail on SQLite and PostgreSQL: accesses are recorded with a
pseudonym of the patient, and any changed, deleted or reordered entry is detected."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text, update

from bridge.audit import Access
from bridge.canonical import CareType
from bridge.config import generate_config, load_settings
from bridge.db import Meta, make_engine
from bridge.runtime import open_store
from bridge.schema import upgrade
from bridge.secretbox import Keyring, SecretBox
from bridge.store import Store
from tests.support.bridge import WIJKBRUG
from tests.support.examples import BSN, message, region, render

pytestmark = pytest.mark.integration

HIS = Access("client:1 his-test", "01234567", "10.0.0.7")


def traffic(store: Store) -> str:
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    stored, _ = store.accept_message(practice, message(), decision, render, HIS)
    store.get_communication(stored.id, practice, HIS)
    store.search_communications(practice, access=HIS)
    return stored.id


def test_accesses_are_recorded_with_a_pseudonym(store: Store) -> None:
    comm_id = traffic(store)
    pseudonym = store.box.keyed_hash("patient", BSN)
    mine = list(store.audit_entries(patient=pseudonym))
    assert [e.action for e in mine] == ["message.create", "message.read", "message.search"]
    assert all(e.target == f"Communication/{comm_id}" for e in mine)
    assert {(e.actor, e.org, e.origin) for e in mine} == {(HIS.actor, HIS.org, HIS.origin)}
    everything = list(store.audit_entries())
    assert any(e.action == "admin.route.add" for e in everything)
    with store.session() as s:
        dump = " ".join(str(r) for r in s.execute(text("SELECT * FROM audit_log")))
    assert BSN not in dump
    assert store.verify_audit() == []


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_log SET actor = 'someone else' WHERE id = 3", "entry 3: changed"),
        ("DELETE FROM audit_log WHERE id = 4", "entry 4: missing"),
        (  # swap two entries
            "UPDATE audit_log SET id = -5 WHERE id = 5; UPDATE audit_log SET id = 5 WHERE id = 6;"
            " UPDATE audit_log SET id = 6 WHERE id = -5",
            "entry 5:",
        ),
        ("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)", "newest entries"),
    ],
)
def test_tampering_is_detected(store: Store, tamper: str, expected: str) -> None:
    traffic(store)
    assert store.verify_audit() == []
    with store.session() as s:
        for statement in tamper.split(";"):
            s.execute(text(statement))
    problems = store.verify_audit()
    assert problems and any(expected in p for p in problems), problems


def test_cli_verify_and_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(load_settings(generate_config(data)))
    traffic(store)
    store.engine.dispose()

    def wijkbrug(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WIJKBRUG, "--data-dir", str(data), *args], capture_output=True, text=True, check=False
        )

    ok = wijkbrug("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    export = wijkbrug("audit", "export", "--patient", BSN)
    assert export.returncode == 0
    lines = export.stdout.strip().splitlines()
    assert len(lines) == 3 and '"what": "message.create"' in lines[0]
    assert BSN not in export.stdout
    again = wijkbrug("audit", "export", "--patient", BSN)
    assert '"what": "audit.export"' in again.stdout  # the first export was recorded
    store = open_store(load_settings(data / "config.yaml"))
    with store.session() as s:
        s.execute(text("UPDATE audit_log SET reason = 'x' WHERE id = 2"))
    store.engine.dispose()
    broken = wijkbrug("audit", "verify")
    assert broken.returncode == 1 and "entry 2: changed" in broken.stdout


def test_audit_lock_is_taken_last_so_crossing_writers_do_not_deadlock(postgres_url: str) -> None:
    """The pattern of the kill -9 burst on PostgreSQL: one transaction audits and then
    touches a row, another touches that row and then audits. Were the chain head locked
    at the moment of auditing, the two would wait for each other (deadlock detected, a
    500 to the practice); the head is taken at commit, after every other lock."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    store = Store(engine, SecretBox(Keyring.generate()))
    with store.session() as s:
        s.add(Meta(key="contended", value=0))
    both_started = threading.Barrier(2, timeout=10)

    def audit_then_touch() -> None:
        with store.session() as s:
            store._audit(s, HIS, "test.first")
            s.flush()
            both_started.wait()
            time.sleep(0.3)  # let the other transaction queue on the row first
            s.execute(update(Meta).where(Meta.key == "contended").values(value=1))

    def touch_then_audit() -> None:
        with store.session() as s:
            s.execute(update(Meta).where(Meta.key == "contended").values(value=2))
            both_started.wait()
            time.sleep(0.6)  # the other transaction now waits for this row
            store._audit(s, HIS, "test.second")

    try:
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(audit_then_touch), pool.submit(touch_then_audit)]:
                done.result(timeout=30)  # raises OperationalError on a deadlock
        assert [e.action for e in store.audit_entries()][-2:] == ["test.second", "test.first"]
        assert store.verify_audit() == []
    finally:
        engine.dispose()
