"""Storage on both SQLite and the machine's PostgreSQL: directory, cases, outbox, events."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, func, select, text

from bridge import files
from bridge.canonical import CareType, Party, Priority, Reply
from bridge.db import Base, make_engine
from bridge.errors import ErrorCode, WijkbrugError
from bridge.schema import upgrade
from bridge.store import Store
from tests.support.examples import BSN, message, region, render

pytestmark = pytest.mark.integration


def test_directory_and_routing(store: Store) -> None:
    region(store)
    decision = store.decide(CareType.WONDZORG, "1092 AB")
    assert decision.routed and decision.provider_name == "Thuiszorg Oost"
    assert not store.decide(CareType.GGZ, "1092 AB").routed
    with pytest.raises(WijkbrugError) as err:
        store.add_org("provider", "Dubbel", agb=None, ura="12345678")
    assert err.value.code is ErrorCode.CONFLICT
    with pytest.raises(WijkbrugError):
        store.add_team("12345678", "Team X", ["not-a-matrix-id"])
    with pytest.raises(WijkbrugError):
        store.add_route(CareType.WONDZORG, 1098, 1091, "12345678")


def test_client_tokens_are_hashed_and_bound_to_their_org(store: Store) -> None:
    region(store)
    _, token = store.add_client("01234567", "his")
    ref = store.client_for_token(token)
    assert ref is not None and ref.org.agb == "01234567"
    assert store.client_for_token(token + "x") is None
    store.revoke_client(ref.id)
    assert store.client_for_token(token) is None  # revoked: at once
    assert [(r, revoked) for r, revoked, _ in store.list_clients()] == [(ref, True)]
    with store.session() as s:
        stored = s.execute(text("SELECT token_hash FROM clients")).scalar_one()
    assert token not in stored and len(stored) == 64


def test_a_known_token_is_remembered_only_until_the_directory_changes(
    store: Store, database_url: str
) -> None:
    """Every request asks who its token is, and the answer is cached; another process of
    the installation (here a second Store on the same database, as the CLI or a second
    bridge worker is) that revokes, renews or lets a token expire is obeyed at once."""
    region(store)
    client_id, token = store.add_client("01234567", "his")
    other_id, other_token = store.add_client("01234567", "his-2")
    engine = make_engine(database_url)
    elsewhere = Store(engine, store.box)
    try:
        assert store.client_for_token(token) is not None  # now cached
        assert store.client_for_token(other_token) is not None
        elsewhere.revoke_client(client_id)
        assert store.client_for_token(token) is None
        renewed = elsewhere.renew_client_token(other_id, None)
        assert store.client_for_token(other_token) is None
        ref = store.client_for_token(renewed)
        assert ref is not None and ref.id == other_id
        soon = datetime.now(UTC) + timedelta(milliseconds=300)
        expiring = elsewhere.renew_client_token(other_id, soon)
        assert store.client_for_token(expiring) is not None  # cached, with its expiry
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
        with pytest.raises(WijkbrugError) as err:
            store.client_for_token(expiring)
        assert err.value.code is ErrorCode.UNAUTHORIZED and "expired" in err.value.message
    finally:
        engine.dispose()


def test_messages_accepted_together_share_a_commit_and_fail_alone(store: Store) -> None:
    """Posts that arrive while a transaction is being committed are stored together in the
    next one (group commit), each under its own savepoint: one message that cannot be
    stored fails alone, a re-post in the same batch gets the first back, and every
    message's rows, outbox item and audit entry are there exactly once."""
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    commits: list[int] = []
    first_commit = threading.Event()

    @event.listens_for(store.engine, "commit")
    def slow_disk(_conn: Any) -> None:
        commits.append(1)
        if len(commits) == 1:
            first_commit.set()
            time.sleep(0.3)  # the first commit is slow: the others queue behind it

    def broken_render(comm_id: str, number: str, now: datetime) -> dict[str, Any]:
        raise ValueError("cannot render this one")

    def post(ident: str) -> tuple[str, bool]:
        stored, created = store.accept_message(
            practice,
            message(ident, bsn=BSN if ident != "other-patient" else "111222333"),
            decision,
            broken_render if ident == "broken" else render,
        )
        return stored.id, created

    names = [f"m{n}" for n in range(10)] + ["m3", "broken", "other-patient"]
    with ThreadPoolExecutor(len(names)) as pool:
        lead = pool.submit(post, "first")
        assert first_commit.wait(10)
        rest = {name: pool.submit(post, name) for name in names}
        assert lead.result(30)[1]
        with pytest.raises(ValueError, match="cannot render"):
            rest.pop("broken").result(30)
        results = {name: future.result(30) for name, future in rest.items()}
    event.remove(store.engine, "commit", slow_disk)
    assert all(created for created in [r[1] for n, r in results.items() if n != "m3"])
    ids = {ident for ident, _ in results.values()}
    assert len(ids) == 11  # "m3" twice: one message
    # Far fewer commits than messages: 1 + the batch (+ at most the broken one's retry).
    assert len(commits) <= 4, commits
    with store.session() as s:
        stored = s.execute(text("SELECT identifier_value FROM communications")).scalars().all()
        outbox = s.execute(text("SELECT COUNT(*) FROM outbox")).scalar_one()
        created_entries = s.execute(
            text("SELECT COUNT(*) FROM audit_log WHERE action = 'message.create'")
        ).scalar_one()
        case_count = s.execute(text("SELECT COUNT(*) FROM cases")).scalar_one()
    assert sorted(stored) == sorted(["first", "other-patient", *[f"m{n}" for n in range(10)]])
    assert outbox == 12 and created_entries == 12 and case_count == 2
    assert store.verify_audit() == []


def test_a_message_stored_alone_that_fails_leaves_nothing_and_gets_its_own_error(
    store: Store,
) -> None:
    """A batch of one has no savepoint: when its message fails half-way (its case row is
    written, its communication is not), the whole transaction is rolled back, the sender
    gets that message's own error, and it is not tried a second time."""
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    renders: list[str] = []

    def broken_render(comm_id: str, number: str, now: datetime) -> dict[str, Any]:
        renders.append(number)
        raise ValueError("cannot render this one")

    tables = ("cases", "communications", "outbox", "routing_decisions", "audit_log")

    def counts() -> list[int]:
        with store.session() as s:
            return [
                s.execute(select(func.count()).select_from(Base.metadata.tables[t])).scalar_one()
                for t in tables
            ]

    before = counts()
    with pytest.raises(ValueError, match="cannot render"):
        store.accept_message(practice, message("alone"), decision, broken_render)
    assert len(renders) == 1  # not retried as if a concurrent writer had been in the way
    assert counts() == before
    assert store.accept_message(practice, message("alone"), decision, render)[1]
    assert store.verify_audit() == []


def test_the_outbox_takes_the_most_urgent_case_first_and_keeps_each_case_in_order(
    store: Store,
) -> None:
    """A queue of routine messages does not hold up an urgent one: the most urgent case
    goes first, and a case with an urgent message waiting behind its own routine one
    takes both before the routine cases (in its own order)."""
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    patients = ["999911120", "999911132", "999911144", "999911156", "999911168", "999911181"]

    def post(ident: str, bsn: str, priority: Priority = Priority.ROUTINE) -> str:
        msg = replace(message(ident, bsn=bsn), priority=priority)
        return store.accept_message(practice, msg, decision, render)[0].id

    routine = [post(f"routine-{n}", bsn) for n, bsn in enumerate(patients[:5])]
    urgent_new_case = post("urgent-new", patients[5], Priority.URGENT)
    stat_behind = post("stat-behind", patients[2], Priority.STAT)  # after routine-2

    def claim(limit: int) -> list[str]:
        items = store.claim_outbox(limit=limit)
        for item in items:
            store.outbox_done(item.item_id, f"${item.item_id}", context_sent=True)
        return [item.communication_id for item in items]

    assert claim(2) == [routine[2], urgent_new_case]  # the stat case's head, then urgent
    assert claim(1) == [stat_behind]
    assert claim(10) == [routine[0], routine[1], routine[3], routine[4]]


def test_accept_is_idempotent_and_encrypted_at_rest(store: Store) -> None:
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    first, created = store.accept_message(practice, message(), decision, render)
    again, created_again = store.accept_message(practice, message(), decision, render)
    assert created and not created_again and again.id == first.id
    second, _ = store.accept_message(practice, message("msg-2"), decision, render)
    assert second.case_id == first.case_id  # same patient, practice, provider: same case
    with store.session() as s:
        dump = " ".join(
            str(row)
            for table in ("communications", "cases", "outbox")
            for row in s.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        )
    assert BSN not in dump and "Wondcontrole" not in dump and "de Vries" not in dump


def test_outbox_claims_in_case_order_and_retries(store: Store) -> None:
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    store.accept_message(practice, message("a"), decision, render)
    store.accept_message(practice, message("b"), decision, render)
    work = store.claim_outbox()
    assert len(work) == 1  # the second waits for the first of the same case
    item = work[0]
    assert item.message is not None and item.message.text == "Wondcontrole na ontslag"
    assert item.members == ("@nurse1:localhost", "@nurse2:localhost")
    assert store.claim_outbox() == []  # leased
    store.outbox_retry(item.item_id, "homeserver down", 0, give_up=False)
    retry = store.claim_outbox()
    assert [w.item_id for w in retry] == [item.item_id] and retry[0].attempts == 1
    store.outbox_done(item.item_id, "$event1", context_sent=True)
    nxt = store.claim_outbox()
    assert len(nxt) == 1 and nxt[0].case.context_sent
    comm = store.get_communication(item.communication_id, practice)
    assert comm is not None and comm.status == "completed"


def test_transactions_are_deduplicated_and_replies_scoped(store: Store) -> None:
    region(store)
    practice = store.find_org("01234567")
    other = store.find_org("01234568")
    provider = store.find_org("12345678")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    stored, _ = store.accept_message(practice, message(), decision, render)
    work = store.claim_outbox()[0]
    store.set_case_room(work.case.id, "!room:localhost")
    event = {
        "event_id": "$reply",
        "room_id": "!room:localhost",
        "sender": "@nurse1:localhost",
        "type": "m.room.encrypted",
        "content": {"ciphertext": "x"},
    }
    assert store.store_transaction("t1", [event])
    assert not store.store_transaction("t1", [event])
    assert store.store_transaction("t2", [event])  # same event in a new txn: stored once
    assert [e.event_id for e in store.due_events()] == ["$reply"]
    case = store.case_for_room("!room:localhost")
    assert case is not None

    def reply(comm_id: str, original: str | None, now: datetime) -> tuple[Reply, dict[str, Any]]:
        assert original == stored.id
        answer = Reply(
            id=comm_id,
            in_response_to=original,
            case_number=case.number,
            care_type=CareType.WONDZORG,
            sender=Party(name="Fatima", matrix_id="@nurse1:localhost"),
            text="Morgen 10:00",
            sent=now,
        )
        return answer, {"resourceType": "Communication", "id": comm_id, "status": "completed"}

    assert store.add_reply(case, "$reply", provider, reply) is not None
    assert store.add_reply(case, "$reply", provider, reply) is None
    mine, total = store.search_communications(practice)
    assert total == 2 and {c.direction for c in mine} == {"to-provider", "to-practice"}
    theirs, other_total = store.search_communications(other)
    assert other_total == 0 and theirs == []
    since, _ = store.search_communications(practice, updated_after=datetime.now(UTC))
    assert since == []


def test_migrations_build_exactly_the_schema_the_models_describe(database_url: str) -> None:
    """Alembic's own comparison: no table, column, index or constraint that the models
    have and the migrations forgot (or the other way round), on SQLite and PostgreSQL."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_retention_purges_a_closed_case_after_its_period_and_keeps_the_audit_trail(
    store: Store,
) -> None:
    """A fake clock: the purge is asked as of a moment; nothing real waits 90 days."""
    region(store)
    practice = store.find_org("01234567")
    decision = store.decide(CareType.WONDZORG, "1092AB")
    photo = replace(
        files.attachment("wond.png", b"\x89PNG\r\n\x1a\n" + b"RETENTIE" * 40, "image/png"),
        id="7f6b7c7e-0000-4000-8000-000000000001",
    )
    msg = replace(message(text_="Bewaartermijn-bericht"), attachments=(photo,))
    stored, _ = store.accept_message(practice, msg, decision, render)
    work = store.claim_outbox()[0]
    store.set_case_room(work.case.id, "!old:localhost")
    store.outbox_done(work.item_id, "$sent", context_sent=True)
    assert store.store_transaction(
        "t1",
        [
            {
                "event_id": "$in",
                "room_id": "!old:localhost",
                "sender": "@nurse1:localhost",
                "type": "m.room.encrypted",
                "content": {"ciphertext": "x"},
            }
        ],
    )
    open_case, _ = store.accept_message(
        practice, message("still-open", bsn="999990019"), decision, render
    )
    store.close_case(work.case.id, "matrix:@nurse1:localhost")
    closed = datetime.now(UTC)

    assert store.purge_closed_cases(closed - timedelta(days=1)) == []  # not yet due
    (purged,) = store.purge_closed_cases(closed + timedelta(seconds=1))  # 90 days later
    assert purged.number == work.case.number and purged.room_id == "!old:localhost"
    assert store.get_communication(stored.id, practice) is None
    assert store.read_file(photo.id, practice) is None
    assert store.get_communication(open_case.id, practice) is not None  # others untouched
    assert [e.event_id for e in store.due_events()] == []
    with store.session() as s:
        for table in ("communications", "attachments", "outbox", "inbound_events"):
            rows = s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            assert rows == (1 if table in ("communications", "outbox") else 0), table
        case_row = s.execute(
            text("SELECT status, patient_key FROM cases WHERE id = :id"), {"id": purged.id}
        ).one()
    assert tuple(case_row) == ("purged", "")
    # The room is the homeserver's to purge, then the case is erased; the trail stays whole.
    assert [c.id for c in store.rooms_to_erase()] == [purged.id]
    store.room_erased(purged.id)
    assert store.rooms_to_erase() == []
    actions = [e.action for e in store.audit_entries()]
    assert actions[-1] == "case.room-purge"
    assert actions.index("message.create") < actions.index("case.purge")
    assert store.verify_audit() == []
    assert store.purge_closed_cases(closed + timedelta(days=1)) == []  # once only
