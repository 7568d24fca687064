"""Storage of the bridge: the one place that speaks SQL (SQLAlchemy 2).

Every public method is one transaction. Patient data goes in and out of the database
through :class:`bridge.secretbox.SecretBox` envelopes bound to their row.

    directory   organisations, teams, routes, integration clients
    cases       cases, communications (both directions), the outbox to the homeserver
    matrix      appservice transactions, inbound room events, ghosts, meta facts
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    bindparam,
    delete,
    event,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from bridge import cases, dialects
from bridge.audit import SYSTEM, Access
from bridge.canonical import (
    Attachment,
    CareType,
    CaseMessage,
    Identifier,
    Patient,
    Priority,
    ProviderReply,
    Reply,
)
from bridge.db import (
    READ_ONLY,
    AppserviceTransaction,
    Case,
    Client,
    Communication,
    Escalation,
    Ghost,
    InboundEvent,
    Organisation,
    OutboxItem,
    PushItem,
    RoutingDecision,
    StoredFile,
    TeamMember,
    make_sessionmaker,
    utcnow,
)
from bridge.directory import ClientRef, Directory, OrgRef, decision_values, org_ref
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.groupcommit import GroupCommit, Job
from bridge.routing import Decision
from bridge.secretbox import SecretBox
from bridge.trail import PENDING_KEY


@dataclass(frozen=True)
class StoredCommunication:
    id: str
    case_id: int
    direction: str
    status: str
    resource: dict[str, Any]
    last_updated: datetime


@dataclass(frozen=True)
class CaseRef:
    id: int
    number: str
    care_type: CareType
    room_id: str | None
    practice: OrgRef
    provider: OrgRef
    team_id: int
    status: str
    context_sent: bool


@dataclass(frozen=True)
class OutboxWork:
    """One message to deliver to a case room."""

    item_id: int
    attempts: int
    communication_id: str
    case: CaseRef
    message: CaseMessage | None  # a practice's message for the provider's team, or ...
    members: tuple[str, ...]
    reply: Reply | None = None  # ... a nurse's answer from her ECD, for the room
    queued_at: datetime | None = None  # when it was accepted (for the latency metric)


@dataclass(frozen=True)
class EscalationWork:
    """An urgent message that waited too long for a nurse."""

    communication_id: str
    case: CaseRef
    message: CaseMessage
    delivered_at: datetime
    limit_minutes: float


@dataclass(frozen=True)
class StatusUpdate:
    """A practice's own message as it is now (delivered, read, not deliverable)."""

    resource: dict[str, Any]  # stored R4 form
    identifier: tuple[str, str]  # the practice's own identifier (system, value)


@dataclass(frozen=True)
class PushWork:
    """A reply, or a status update of the practice's own message, to push to a practice
    system's endpoint, in its dialect. Exactly one of ``reply`` and ``status`` is set."""

    item_id: int
    attempts: int
    client: ClientRef
    url: str
    token: str | None
    reply: Reply | None
    status: StatusUpdate | None
    case: CaseRef

    @property
    def what(self) -> str:
        """For logs: which push this is (ids only)."""
        if self.reply is not None:
            return f"reply {self.reply.id}"
        return f"status of {self.status.resource.get('id') if self.status else '?'}"


@dataclass(frozen=True)
class PendingEvent:
    event_id: str
    room_id: str
    sender: str
    type: str
    event: dict[str, Any]
    attempts: int
    received_at: datetime


NO_KEY_YET = "no megolm key yet"  # an inbound event waiting for its key
# deadlock_detected, serialization_failure
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

_Queued = TypeVar("_Queued", OutboxItem, PushItem)


@dataclass(frozen=True)
class _Acceptance:
    """A routed message to store (the arguments of :meth:`Store.accept_message`)."""

    practice: OrgRef
    msg: CaseMessage
    decision: Decision
    render: Any
    access: Access
    patient_key: str
    client_id: int | None
    shard: int


_Accepted = tuple[StoredCommunication, bool]


class _GoAlone(Exception):
    """A message of a batch that is to be stored again in a transaction of its own."""


def _concurrent(exc: Exception) -> bool:
    """Whether a write failed only because of a concurrent writer: a unique key taken
    meanwhile, or PostgreSQL's deadlock victim or serialisation failure."""
    if isinstance(exc, IntegrityError):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


# How urgent a message is for the outbox (FHIR request-priority: stat > asap > urgent >
# routine); lower goes first.
_URGENCY = sql_case(
    {Priority.STAT.value: 0, Priority.ASAP.value: 1, Priority.URGENT.value: 2},
    value=Communication.priority,
    else_=3,
)

# The statements of the accept path, built once: every practice system's post runs them.
_CASES = cast(Table, Case.__table__)
_COMMUNICATIONS = cast(Table, Communication.__table__)
_OUTBOX = cast(Table, OutboxItem.__table__)
_DECISIONS = cast(Table, RoutingDecision.__table__)
_FILES = cast(Table, StoredFile.__table__)
_SENDERS_OWN = select(_COMMUNICATIONS.c.id).where(
    _COMMUNICATIONS.c.author_org_id == bindparam("org"),
    _COMMUNICATIONS.c.identifier_system == bindparam("system"),
    _COMMUNICATIONS.c.identifier_value == bindparam("value"),
)
_OPEN_CASE = select(_CASES.c.id, _CASES.c.number).where(
    _CASES.c.patient_key == bindparam("patient"),
    _CASES.c.practice_id == bindparam("practice"),
    _CASES.c.provider_id == bindparam("provider"),
    # Spelled out, not bound: the open-case index is partial (status = 'open'), and a
    # bound value cannot select it in a prepared statement's generic plan (PostgreSQL).
    _CASES.c.status == literal_column("'open'"),
)
_CASE_NUMBERED = (
    update(_CASES).where(_CASES.c.id == bindparam("case")).values(number=bindparam("number"))
)
_CASE_UPDATED = (
    update(_CASES).where(_CASES.c.id == bindparam("case")).values(updated_at=bindparam("at"))
)


class Store(Directory):
    """Transactions over the bridge database."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box
        self._sessions = make_sessionmaker(engine)
        self._readers = make_sessionmaker(engine, read_only=True)
        self._read_engine = engine.execution_options(**{READ_ONLY: True})
        self._constants: dict[Select[Any], str] = {}
        event.listen(self._sessions, "before_commit", self.seal_audit)
        self._skip_locked = engine.dialect.name == "postgresql"
        self._client_cache = (-1, {})
        self._acceptances: GroupCommit[_Acceptance, _Accepted] = GroupCommit(
            self._write_acceptances
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads (and may not write): on SQLite it does not wait
        for the one writer, and no writer waits for it."""
        with self._readers.begin() as s:
            yield s

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A plain connection for a read or two (no ORM session), beside the writer as
        :meth:`reading` is."""
        with self._read_engine.connect() as conn:
            yield conn

    def read_constant(self, statement: Select[Any]) -> Any:
        """The first column of the first row of ``statement``, a query without parameters,
        or None: compiled once, run on a pooled driver connection outside a transaction of
        ours (beside the writer, as :meth:`reading` is). For the reads every request makes:
        a tenth of the cost of SQLAlchemy's execution path (11 µs against 100 µs on SQLite).
        Values arrive as the driver gives them, without the column type's processing."""
        sql = self._constants.get(statement)
        if sql is None:
            literal = {"literal_binds": True}
            sql = str(statement.compile(dialect=self.engine.dialect, compile_kwargs=literal))
            self._constants[statement] = sql
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            conn.close()  # back to the pool, which ends the driver's transaction, if any
        return None if row is None else row[0]

    # ------------------------------------------------------------------ cases

    def _seal_resource(self, comm_id: str, resource: dict[str, Any]) -> str:
        return self.box.seal_json(resource, f"communications:resource:{comm_id}")

    def _open_resource(self, comm: Communication) -> dict[str, Any]:
        data: dict[str, Any] = self.box.open_json(
            comm.resource_enc, f"communications:resource:{comm.id}"
        )
        return data

    def _bump(self, comm: Communication, resource: dict[str, Any]) -> None:
        """Store a changed resource as a new version (versionId, lastUpdated)."""
        now = utcnow()
        comm.version += 1
        resource.setdefault("meta", {})["versionId"] = str(comm.version)
        resource["meta"]["lastUpdated"] = now.isoformat()
        comm.resource_enc = self._seal_resource(comm.id, resource)
        comm.last_updated = now

    def patient_key(self, patient: Patient) -> str:
        """The pseudonym a case is found by: a keyed hash of the BSN, or (a case started
        from chat without BSN) of name, birth date and postcode."""
        if patient.bsn:
            return self.box.keyed_hash("patient", patient.bsn)
        who = f"{patient.name}|{patient.birth_date}|{patient.postcode}"
        return self.box.keyed_hash("patient-without-bsn", who)

    def _patient_of(self, s: Session, comm: Communication) -> str | None:
        case = s.get(Case, comm.case_id)
        return case.patient_key if case else None

    def _stored(self, comm: Communication) -> StoredCommunication:
        return StoredCommunication(
            comm.id,
            comm.case_id,
            comm.direction,
            comm.status,
            self._open_resource(comm),
            comm.last_updated,
        )

    def find_by_identifier(
        self, author_org_id: int, identifier: Identifier, access: Access | None = None
    ) -> StoredCommunication | None:
        """The sender's own message with this identifier (a re-post); read access is
        recorded when ``access`` is given."""
        where = {"org": author_org_id, "system": identifier.system, "value": identifier.value}
        with self.read_connection() as conn:  # most posts are new: look without the write lock
            if conn.execute(_SENDERS_OWN, where).scalar() is None:
                return None
        with self.session() as s:
            known = s.connection().execute(_SENDERS_OWN, where).scalar()
            if known is None:  # pragma: no cover - messages are never deleted but by retention
                return None
            return self._read_again(s, known, access)

    def _read_again(self, s: Session, comm_id: str, access: Access | None) -> StoredCommunication:
        """A message its sender posted again, as stored; the reading audited."""
        comm = s.get(Communication, comm_id)
        assert comm is not None
        if access is not None:
            self._audit(
                s,
                access,
                "message.read",
                patient=self._patient_of(s, comm),
                obj=f"Communication/{comm.id}",
            )
        return self._stored(comm)

    def accept_message(
        self,
        practice: OrgRef,
        msg: CaseMessage,
        decision: Decision,
        render: Any,
        access: Access = SYSTEM,
        client_id: int | None = None,
        shard: int = 0,
    ) -> tuple[StoredCommunication, bool]:
        """Store a routed GP message, its case and its outbox item in one transaction.

        ``render(comm_id, case_number, now)`` builds the FHIR resource clients will see.
        Returns the stored communication and whether it was created (False: the sender
        re-posted an identifier we have, and gets the existing resource back). Messages
        accepted at the same moment share the transaction (see :mod:`bridge.groupcommit`);
        it returns once that is committed.
        """
        assert decision.provider_id is not None and decision.team_id is not None
        work = _Acceptance(
            practice, msg, decision, render, access, self.patient_key(msg.patient), client_id, shard
        )
        try:
            return self._acceptances.submit(work)
        except _GoAlone:
            return self._accept_alone(work)

    def _write_acceptances(self, jobs: Sequence[Job[_Acceptance, _Accepted]]) -> None:
        """One batch of :meth:`accept_message`: each message under a savepoint of one
        transaction, so one that fails takes only its own rows (and audit entries) back.
        Its results are given once the transaction is committed; a message that met a
        concurrent writer (a unique key, a deadlock), and every message of a transaction
        that failed as a whole, goes again alone. A batch of one (a quiet moment) has no
        savepoint: its failure rolls the transaction back and is its answer (after a
        concurrent writer, it goes again)."""
        done: list[tuple[Job[_Acceptance, _Accepted], _Accepted]] = []
        alone = len(jobs) == 1
        try:
            with self.session() as s:
                for job in jobs:
                    if alone:
                        done.append((job, self._accept_in(s, job.work)))
                        continue
                    audited = len(s.info.get(PENDING_KEY, ()))
                    try:
                        # A plain SAVEPOINT: what _accept_in writes is statements, not
                        # ORM objects the session would have to track.
                        with s.connection().begin_nested():
                            done.append((job, self._accept_in(s, job.work)))
                    except Exception as exc:  # its savepoint is rolled back: the rest go on
                        del s.info.get(PENDING_KEY, [])[audited:]
                        job.finish(error=_GoAlone() if _concurrent(exc) else exc)
        except Exception as exc:
            again = not alone or _concurrent(exc)
            for job in jobs:
                if not job.finished:
                    job.finish(error=_GoAlone() if again else exc)
            return
        for job, accepted in done:
            job.finish(accepted)

    def _accept_alone(self, work: _Acceptance) -> _Accepted:
        for _ in range(3):
            try:
                with self.session() as s:
                    return self._accept_in(s, work)
            except (IntegrityError, OperationalError) as exc:
                # A concurrent writer: a re-post of the same identifier won the race (the
                # next try finds it and returns it), a concurrent first message of the
                # same case created the case (the next try joins it), or PostgreSQL chose
                # this transaction as a deadlock victim. It was rolled back whole.
                if not _concurrent(exc):
                    raise
        raise WijkbrugError(ErrorCode.UNAVAILABLE, "too many concurrent writes; try again")

    def _accept_in(self, s: Session, work: _Acceptance) -> _Accepted:
        # Every practice system posts here, so its rows are written as plain INSERTs
        # (the ORM's unit of work costs more than the statements themselves), and the
        # re-post check is the transaction's first read instead of a transaction of its own.
        practice, msg, decision, render = work.practice, work.msg, work.decision, work.render
        access, patient_key = work.access, work.patient_key
        assert decision.provider_id is not None and decision.team_id is not None
        now = utcnow()
        conn = s.connection()
        identifier = msg.identifier
        known = conn.execute(
            _SENDERS_OWN,
            {"org": practice.id, "system": identifier.system, "value": identifier.value},
        ).scalar()
        if known is not None:
            return self._read_again(s, known, access), False
        case_id, number = conn.execute(
            _OPEN_CASE,
            {"patient": patient_key, "practice": practice.id, "provider": decision.provider_id},
        ).first() or (None, None)
        if case_id is None:
            inserted = conn.execute(
                _CASES.insert(),
                {
                    "patient_key": patient_key,
                    "practice_id": practice.id,
                    "provider_id": decision.provider_id,
                    "team_id": decision.team_id,
                    "care_type": msg.care_type.value,
                    "created_at": now,
                    "updated_at": now,
                },
            ).inserted_primary_key
            assert inserted is not None
            case_id = int(inserted[0])
            number = cases.case_number(case_id)
            conn.execute(_CASE_NUMBERED, {"case": case_id, "number": number})
        else:
            conn.execute(_CASE_UPDATED, {"case": case_id, "at": now})
        comm_id = str(uuid.uuid4())
        resource = render(comm_id, number, now)
        status = resource.get("status", "in-progress")
        conn.execute(
            _COMMUNICATIONS.insert(),
            {
                "id": comm_id,
                "case_id": case_id,
                "direction": "to-provider",
                "author_org_id": practice.id,
                "client_id": work.client_id,
                "practice_id": practice.id,
                "provider_id": decision.provider_id,
                "identifier_system": identifier.system,
                "identifier_value": identifier.value,
                "status": status,
                "priority": msg.priority.value,
                "resource_enc": self._seal_resource(comm_id, resource),
                "message_enc": self.box.seal_json(
                    cases.message_to_dict(msg), f"communications:message:{comm_id}"
                ),
                "created_at": now,
                "last_updated": now,
            },
        )
        self._store_files(s, comm_id, msg.attachments)
        conn.execute(
            _OUTBOX.insert(),
            {
                "communication_id": comm_id,
                "case_id": case_id,
                "shard": work.shard,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
        # The decision for the admin page, in the same transaction (one commit per post).
        conn.execute(
            _DECISIONS.insert(), decision_values(decision, msg.priority, practice.id, case_id)
        )
        self._audit(
            s, access, "message.create", patient=patient_key, obj=f"Communication/{comm_id}"
        )
        return StoredCommunication(comm_id, case_id, "to-provider", status, resource, now), True

    def _store_files(self, s: Session, comm_id: str, attachments: Sequence[Attachment]) -> None:
        """A message's files, encrypted at rest (ids assigned by the caller; its
        communication row is written already)."""
        rows = []
        for position, att in enumerate(attachments):
            assert att.id and att.data, "a file is stored with its id and contents"
            rows.append(
                {
                    "id": att.id,
                    "communication_id": comm_id,
                    "position": position,
                    "content_type": att.content_type,
                    "size": att.size,
                    "sha256": att.sha256,
                    "title_enc": self.box.seal(att.title.encode(), f"attachments:title:{att.id}"),
                    "data_enc": self.box.seal(att.data, f"attachments:data:{att.id}"),
                    "created_at": utcnow(),
                }
            )
        if rows:
            s.connection().execute(_FILES.insert(), rows)

    def _open_file(self, row: StoredFile) -> Attachment:
        return Attachment(
            content_type=row.content_type,
            title=self.box.open(row.title_enc, f"attachments:title:{row.id}").decode(),
            size=row.size,
            sha256=row.sha256,
            id=row.id,
            data=self.box.open(row.data_enc, f"attachments:data:{row.id}"),
        )

    def file_contents(self, file_id: str) -> Attachment:
        """A stored file with its contents, for delivery into the case room."""
        with self.session() as s:
            row = s.get(StoredFile, file_id)
            if row is None:
                raise WijkbrugError(ErrorCode.NOT_FOUND, "no such file")
            return self._open_file(row)

    def read_file(self, file_id: str, org: OrgRef, access: Access = SYSTEM) -> Attachment | None:
        """A file of a message the organisation may read (None: unknown, or not theirs)."""
        with self.session() as s:
            row = s.get(StoredFile, file_id)
            if row is None:
                return None
            comm = self._readable(s, row.communication_id, org, access, f"Binary/{row.id} of")
            return None if comm is None else self._open_file(row)

    def get_communication(
        self, comm_id: str, org: OrgRef, access: Access = SYSTEM
    ) -> StoredCommunication | None:
        with self.session() as s:
            comm = self._readable(s, comm_id, org, access)
            return None if comm is None else self._stored(comm)

    def _readable(
        self, s: Session, comm_id: str, org: OrgRef, access: Access, part: str | None = None
    ) -> Communication | None:
        """The communication if ``org`` is a party to it (its practice, provider or
        huisartsenpost), its reading (or that of its ``part``, a file) audited; else None."""
        comm = s.get(Communication, comm_id)
        if comm is None or org.id not in (comm.practice_id, comm.provider_id, comm.hap_id):
            return None
        what = f"Communication/{comm.id}"
        self._audit(
            s,
            access,
            "file.read" if part else "message.read",
            patient=self._patient_of(s, comm),
            obj=f"{part} {what}" if part else what,
        )
        return comm

    def search_communications(
        self,
        org: OrgRef,
        *,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        inclusive_after: bool = False,
        identifier: Identifier | None = None,
        identifier_value: str | None = None,
        status: str | None = None,
        count: int = 50,
        offset: int = 0,
        access: Access = SYSTEM,
    ) -> tuple[list[StoredCommunication], int]:
        """The organisation's communications, oldest update first; returns (page, total)."""
        query = select(Communication).where(
            or_(
                Communication.practice_id == org.id,
                Communication.provider_id == org.id,
                Communication.hap_id == org.id,
            )
        )
        if updated_after is not None:
            query = query.where(
                Communication.last_updated >= updated_after
                if inclusive_after
                else Communication.last_updated > updated_after
            )
        if updated_before is not None:
            query = query.where(Communication.last_updated < updated_before)
        if identifier is not None:
            query = query.where(
                Communication.identifier_system == identifier.system,
                Communication.identifier_value == identifier.value,
            )
        elif identifier_value is not None:
            query = query.where(Communication.identifier_value == identifier_value)
        if status is not None:
            query = query.where(Communication.status == status)
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(
                s.scalars(
                    query.order_by(Communication.last_updated, Communication.id)
                    .offset(offset)
                    .limit(count)
                )
            )
            for comm in rows:
                self._audit(
                    s,
                    access,
                    "message.search",
                    patient=self._patient_of(s, comm),
                    obj=f"Communication/{comm.id}",
                )
            return [self._stored(c) for c in rows], total

    def _case_ref(self, s: Session, case: Case) -> CaseRef:
        practice = s.get(Organisation, case.practice_id)
        provider = s.get(Organisation, case.provider_id)
        assert practice is not None and provider is not None and case.number is not None
        return CaseRef(
            case.id,
            case.number,
            CareType(case.care_type),
            case.room_id,
            org_ref(practice),
            org_ref(provider),
            case.team_id,
            case.status,
            case.context_sent,
        )

    def case_for_room(self, room_id: str) -> CaseRef | None:
        with self.session() as s:
            case = s.scalar(select(Case).where(Case.room_id == room_id))
            return self._case_ref(s, case) if case else None

    def set_case_room(self, case_id: int, room_id: str) -> None:
        with self.session() as s:
            s.execute(update(Case).where(Case.id == case_id).values(room_id=room_id))

    # ------------------------------------------------------------------ outbox

    def _due(
        self, s: Session, model: type[_Queued], limit: int, now: datetime, *where: Any
    ) -> list[_Queued]:
        """Pending rows of a work queue whose time has come, oldest first; locked for this
        transaction and skipped by other workers' (PostgreSQL ``SKIP LOCKED``)."""
        query = (
            select(model)
            .where(model.state == "pending", model.next_attempt_at <= now, *where)
            .order_by(model.id)
            .limit(limit)
        )
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        return list(s.scalars(query))

    def _due_by_urgency(
        self, s: Session, limit: int, now: datetime, *where: Any
    ) -> list[OutboxItem]:
        """The next outbox row of each case, if its time has come: the most urgent case
        first, then the oldest; locked as :meth:`_due` locks them. A case goes in order,
        so only its oldest pending row (in flight included) can be due, and a case is as
        urgent as its most urgent waiting message: a stat message behind a routine one of
        its case takes that one ahead of every routine case. At a Monday-morning peak an
        urgent message does not wait behind the routine queue."""
        cases_waiting = (
            select(
                OutboxItem.case_id,
                func.min(OutboxItem.id).label("head"),
                func.min(_URGENCY).label("rank"),
            )
            .join(Communication, Communication.id == OutboxItem.communication_id)
            .where(OutboxItem.state == "pending")
            .group_by(OutboxItem.case_id)
            .subquery()
        )
        query = (
            select(OutboxItem)
            .join(cases_waiting, cases_waiting.c.head == OutboxItem.id)
            .where(OutboxItem.next_attempt_at <= now, *where)
            .order_by(cases_waiting.c.rank, OutboxItem.id)
            .limit(limit)
        )
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True, of=OutboxItem)
        return list(s.scalars(query))

    def claim_outbox(
        self, limit: int = 10, lease: float = 30.0, workers: tuple[int, int] = (0, 1)
    ) -> list[OutboxWork]:
        """Take due outbox items for this worker (a lease, so a crashed worker's items
        come back after ``lease`` seconds; SKIP LOCKED lets several workers share).
        ``workers`` is (index, count): only items of this process's shards."""
        index, count = workers
        mine = [OutboxItem.shard % count == index] if count > 1 else []
        now = utcnow()
        with self.session() as s:
            work = []
            for item in self._due_by_urgency(s, limit, now, *mine):
                item.next_attempt_at = now + timedelta(seconds=lease)
                comm = s.get(Communication, item.communication_id)
                case = s.get(Case, item.case_id)
                assert comm is not None and case is not None
                stored = self.box.open_json(comm.message_enc, f"communications:message:{comm.id}")
                answer = cases.reply_from_dict(stored) if comm.direction == "to-practice" else None
                msg = None if answer else cases.message_from_dict(stored)
                members = s.scalars(
                    select(TeamMember.matrix_id)
                    .where(TeamMember.team_id == case.team_id)
                    .order_by(TeamMember.matrix_id)
                )
                work.append(
                    OutboxWork(
                        item.id,
                        item.attempts,
                        comm.id,
                        self._case_ref(s, case),
                        msg,
                        tuple(members),
                        answer,
                        item.created_at,
                    )
                )
            return work

    def outbox_done(self, item_id: int, event_id: str, *, context_sent: bool) -> None:
        now = utcnow()
        with self.session() as s:
            item = s.get(OutboxItem, item_id)
            assert item is not None
            item.state = "done"
            item.event_id = event_id
            item.done_at = now
            item.attempts += 1
            comm = s.get(Communication, item.communication_id)
            assert comm is not None
            comm.matrix_event_id = event_id
            resource = self._open_resource(comm)
            resource["status"] = comm.status = "completed"
            resource["sent"] = now.isoformat()
            self._bump(comm, resource)
            self._queue_status(s, comm)
            self._audit(
                s,
                SYSTEM,
                "message.deliver",
                patient=self._patient_of(s, comm),
                obj=f"Communication/{comm.id} -> {event_id}",
            )
            if context_sent:
                s.execute(update(Case).where(Case.id == item.case_id).values(context_sent=True))

    def outbox_retry(self, item_id: int, error: str, delay: float, *, give_up: bool) -> None:
        with self.session() as s:
            item = s.get(OutboxItem, item_id)
            assert item is not None
            item.attempts += 1
            item.last_error = error[:500]
            if give_up:
                item.state = "failed"
                # Tell the practice system through the resource it polls: not delivered.
                comm = s.get(Communication, item.communication_id)
                assert comm is not None
                resource = self._open_resource(comm)
                resource["status"] = comm.status = "not-done"
                resource["statusReason"] = {
                    "text": "Niet afgeleverd in de casusruimte (could not be delivered)"
                }
                self._bump(comm, resource)
                self._queue_status(s, comm)
                self._audit(
                    s,
                    SYSTEM,
                    "message.undeliverable",
                    patient=self._patient_of(s, comm),
                    obj=f"Communication/{comm.id}",
                )
            else:
                item.next_attempt_at = utcnow() + timedelta(seconds=delay)

    def release_leases(self) -> int:
        """Make leased outbox items due now: for a single worker starting up, every lease
        is a dead predecessor's (SQLite allows no other worker)."""
        with self.session() as s:
            result = s.execute(
                update(OutboxItem)
                .where(OutboxItem.state == "pending", OutboxItem.next_attempt_at > utcnow())
                .values(next_attempt_at=utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def outbox_retry_now(self) -> int:
        """Make every pending outbox item due now (after an outage); returns how many."""
        with self.session() as s:
            result = s.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.state == "pending",
                    OutboxItem.attempts > 0,  # backing off, not leased for a first try
                    OutboxItem.next_attempt_at > utcnow(),
                )
                .values(next_attempt_at=utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def queue_stats(self) -> dict[str, float]:
        """What the work queues hold now, for /metrics (counts and an age; no patient
        data). From the database, so every bridge process reports the same."""
        now = utcnow()
        with self.session() as s:

            def count(model: Any, *where: Any) -> int:
                return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

            oldest = s.scalar(
                select(func.min(OutboxItem.created_at)).where(OutboxItem.state == "pending")
            )
            return {
                "outbox_oldest_age_seconds": (now - oldest).total_seconds() if oldest else 0.0,
                "outbox_failed": count(OutboxItem, OutboxItem.state == "failed"),
                "push_depth": count(PushItem, PushItem.state == "pending"),
                "push_failed": count(PushItem, PushItem.state == "failed"),
                "inbound_depth": count(InboundEvent, InboundEvent.state == "pending"),
                "undecryptable": count(
                    InboundEvent,
                    InboundEvent.state == "failed",
                    InboundEvent.last_error == "undecryptable",
                ),
                "escalations": count(Escalation),
            }

    def outbox_depth(self) -> int:
        with self.session() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(OutboxItem)
                    .where(OutboxItem.state == "pending")
                )
                or 0
            )

    # ------------------------------------------------------------------ matrix side

    def store_transaction(
        self, txn_id: str, events: Sequence[dict[str, Any]], settled: Collection[str] = ()
    ) -> bool:
        """Store a transaction and its room events; False if we had it already. Events
        in ``settled`` need no handling: they are stored as ``ignored`` at once."""
        with self.session() as s:
            if s.get(AppserviceTransaction, txn_id) is not None:
                return False
            s.add(AppserviceTransaction(txn_id=txn_id, event_count=len(events)))
            for ev in events:
                event_id = ev.get("event_id")
                if not isinstance(event_id, str) or s.get(InboundEvent, event_id) is not None:
                    continue
                s.add(
                    InboundEvent(
                        event_id=event_id,
                        txn_id=txn_id,
                        room_id=str(ev.get("room_id", "")),
                        sender=str(ev.get("sender", "")),
                        type=str(ev.get("type", "")),
                        event_enc=self.box.seal_json(ev, f"inbound_events:event:{event_id}"),
                        state="ignored" if event_id in settled else "pending",
                    )
                )
            return True

    def due_events(self, limit: int = 50) -> list[PendingEvent]:
        now = utcnow()
        with self.session() as s:
            rows = s.scalars(
                select(InboundEvent)
                .where(InboundEvent.state == "pending", InboundEvent.next_attempt_at <= now)
                .order_by(InboundEvent.received_at, InboundEvent.event_id)
                .limit(limit)
            )
            return [
                PendingEvent(
                    r.event_id,
                    r.room_id,
                    r.sender,
                    r.type,
                    self.box.open_json(r.event_enc, f"inbound_events:event:{r.event_id}"),
                    r.attempts,
                    r.received_at,
                )
                for r in rows
            ]

    def event_done(self, event_id: str, state: str = "done", error: str | None = None) -> None:
        with self.session() as s:
            s.execute(
                update(InboundEvent)
                .where(InboundEvent.event_id == event_id)
                .values(state=state, last_error=error)
            )

    def keys_arrived(self) -> int:
        """Events waiting for a megolm key are due now (a key has just come in)."""
        with self.session() as s:
            result = s.execute(
                update(InboundEvent)
                .where(InboundEvent.state == "pending", InboundEvent.last_error == NO_KEY_YET)
                .values(next_attempt_at=utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def event_retry(self, event_id: str, error: str, delay: float) -> None:
        with self.session() as s:
            ev = s.get(InboundEvent, event_id)
            assert ev is not None
            ev.attempts += 1
            ev.last_error = error[:500]
            ev.next_attempt_at = utcnow() + timedelta(seconds=delay)

    def accept_provider_reply(
        self,
        client: ClientRef,
        answer: ProviderReply,
        render: Any,
        access: Access,
        shard: int,
    ) -> tuple[StoredCommunication, bool]:
        """Store a nurse's answer that her care record system (ECD) posted: for the case
        room (an outbox row, sent by her ghost) and for the practice (pushed where it
        pushes). ``render(comm_id, reply, now)`` builds the FHIR resource. Returns the
        stored answer and whether it is new (False: a re-post of the ECD's identifier)."""
        existing = self.find_by_identifier(client.org.id, answer.identifier, access)
        if existing is not None:
            return existing, False
        now = utcnow()
        with self.session() as s:
            original = s.get(Communication, answer.in_response_to)
            if original is None or original.provider_id != client.org.id:
                raise WijkbrugError(
                    ErrorCode.NOT_FOUND,
                    "inResponseTo: no message of a case of this provider has this id",
                    [
                        Issue(
                            ErrorCode.NOT_FOUND,
                            "no message of a case of this provider has this id",
                            "Communication.inResponseTo",
                        )
                    ],
                )
            case = s.get(Case, original.case_id)
            assert case is not None
            if case.status != "open":
                raise WijkbrugError(
                    ErrorCode.CONFLICT,
                    f"case {case.number} is closed; a new message of the practice opens a new one",
                )
            asked = cases.message_from_dict(
                self.box.open_json(original.message_enc, f"communications:message:{original.id}")
            )
            comm_id = str(uuid.uuid4())
            org = s.get(Organisation, client.org.id)
            assert org is not None
            reply = Reply(
                id=comm_id,
                in_response_to=original.id,
                case_number=case.number or "",
                care_type=CareType(case.care_type),
                sender=replace(
                    answer.sender,
                    organisation_name=org.name,
                    organisation_ura=org.ura,
                    organisation_agb=org.agb,
                ),
                text=answer.text,
                sent=now,
                patient=asked.patient,
                attachments=answer.attachments,
            )
            resource = render(comm_id, reply, now)
            comm = Communication(
                id=comm_id,
                case_id=case.id,
                direction="to-practice",
                author_org_id=client.org.id,
                client_id=client.id,
                practice_id=case.practice_id,
                provider_id=case.provider_id,
                identifier_system=answer.identifier.system,
                identifier_value=answer.identifier.value,
                status=resource.get("status", "in-progress"),
                resource_enc=self._seal_resource(comm_id, resource),
                message_enc=self.box.seal_json(
                    cases.reply_to_dict(reply), f"communications:message:{comm_id}"
                ),
                in_response_to=original.id,
                created_at=now,
                last_updated=now,
            )
            s.add(comm)
            s.flush()
            self._store_files(s, comm_id, answer.attachments)
            s.add(
                OutboxItem(
                    communication_id=comm_id, case_id=case.id, shard=shard, next_attempt_at=now
                )
            )
            case_ref = self._case_ref(s, case)
            for client_id in self._push_targets(s, case_ref, original):
                s.add(PushItem(client_id=client_id, communication_id=comm_id, next_attempt_at=now))
            self._audit(
                s, access, "reply.create", patient=case.patient_key, obj=f"Communication/{comm_id}"
            )
            return self._stored(comm), True

    def add_reply(
        self,
        case: CaseRef,
        event_id: str,
        author_org: OrgRef,
        render: Any,
        access: Access = SYSTEM,
        hap_id: int | None = None,
    ) -> StoredCommunication | None:
        """Store a nurse's answer from the room as a Communication for the practice (and,
        outside office hours, for the huisartsenpost ``hap_id``).

        ``render(comm_id, in_response_to, now)`` builds the canonical :class:`Reply` and
        its FHIR resource. Every push client of the practice gets a push item in the same
        transaction. Returns None if the event was stored already (a replayed transaction).
        """
        now = utcnow()
        with self.session() as s:
            if s.scalar(select(Communication).where(Communication.matrix_event_id == event_id)):
                return None
            latest = s.scalar(_latest_message_query(case.id))
            original = latest.id if latest else None
            comm_id = str(uuid.uuid4())
            reply, resource = render(comm_id, original, now)
            comm = Communication(
                id=comm_id,
                case_id=case.id,
                direction="to-practice",
                author_org_id=author_org.id,
                practice_id=case.practice.id,
                provider_id=case.provider.id,
                hap_id=hap_id,
                identifier_system="https://wijkbrug.nl/fhir/NamingSystem/message",
                identifier_value=comm_id,
                status=resource.get("status", "completed"),
                resource_enc=self._seal_resource(comm_id, resource),
                message_enc=self.box.seal_json(
                    cases.reply_to_dict(reply), f"communications:message:{comm_id}"
                ),
                in_response_to=original,
                matrix_event_id=event_id,
                created_at=now,
                last_updated=now,
            )
            s.add(comm)
            s.flush()
            self._store_files(s, comm_id, reply.attachments)
            self._audit(
                s,
                access,
                "reply.create",
                patient=self._patient_of(s, comm),
                obj=f"Communication/{comm_id}",
            )
            targets = self._push_targets(s, case, latest)
            if hap_id is not None:
                targets += s.scalars(
                    select(Client.id).where(
                        Client.org_id == hap_id,
                        Client.push_url.is_not(None),
                        Client.revoked_at.is_(None),
                    )
                )
            for client_id in targets:
                s.add(PushItem(client_id=client_id, communication_id=comm_id, next_attempt_at=now))
            return self._stored(comm)

    # ------------------------------------------------------------------ push

    def _queue_status(self, s: Session, comm: Communication) -> None:
        """Push the new status of a practice's own message to the practice system that
        sent it, if that one has a push endpoint and its dialect carries status."""
        if comm.client_id is None:  # from chat: no practice or ECD system to tell
            return
        client = s.get(Client, comm.client_id)
        if (
            client is None
            or client.push_url is None
            or client.revoked_at is not None
            or not dialects.pushes_status(client.dialect)
        ):
            return
        s.add(
            PushItem(
                client_id=client.id,
                communication_id=comm.id,
                kind=f"status-{comm.version}",
                next_attempt_at=utcnow(),
            )
        )

    def _push_targets(self, s: Session, case: CaseRef, answered: Communication | None) -> list[int]:
        """Who gets a reply pushed: the practice system that sent the message it answers;
        if that one fetches instead (or the case came from chat), nobody is pushed to
        unless the practice has exactly one push client."""
        pushers = list(
            s.scalars(
                select(Client.id).where(
                    Client.org_id == case.practice.id,
                    Client.push_url.is_not(None),
                    Client.revoked_at.is_(None),
                )
            )
        )
        if answered is not None and answered.client_id is not None:
            return [answered.client_id] if answered.client_id in pushers else []
        return pushers if len(pushers) == 1 else []

    def claim_push(self, limit: int = 10, lease: float = 60.0) -> list[PushWork]:
        """Due pushes (leased, SKIP LOCKED like the outbox)."""
        now = utcnow()
        with self.session() as s:
            work = []
            for item in self._due(s, PushItem, limit, now):
                item.next_attempt_at = now + timedelta(seconds=lease)
                client = s.get(Client, item.client_id)
                comm = s.get(Communication, item.communication_id)
                assert client is not None and comm is not None and client.push_url is not None
                org = s.get(Organisation, client.org_id)
                case = s.get(Case, comm.case_id)
                assert org is not None and case is not None
                token = (
                    self.box.open(client.push_token_enc, f"clients:push_token:{client.id}").decode()
                    if client.push_token_enc
                    else None
                )
                reply, status = None, None
                if item.kind == "reply":
                    reply = cases.reply_from_dict(
                        self.box.open_json(comm.message_enc, f"communications:message:{comm.id}")
                    )
                else:  # the message as it is now: a later change makes an earlier push moot
                    status = StatusUpdate(
                        self._open_resource(comm), (comm.identifier_system, comm.identifier_value)
                    )
                work.append(
                    PushWork(
                        item.id,
                        item.attempts,
                        ClientRef(client.id, client.name, client.dialect, org_ref(org)),
                        client.push_url,
                        token,
                        reply,
                        status,
                        self._case_ref(s, case),
                    )
                )
            return work

    def push_done(self, item_id: int) -> None:
        with self.session() as s:
            item = s.get(PushItem, item_id)
            assert item is not None
            item.state, item.done_at = "done", utcnow()
            item.attempts += 1
            comm = s.get(Communication, item.communication_id)
            assert comm is not None
            self._audit(
                s,
                SYSTEM,
                "reply.push" if item.kind == "reply" else "status.push",
                patient=self._patient_of(s, comm),
                obj=f"Communication/{comm.id} -> client {item.client_id}",
            )

    def push_retry(self, item_id: int, error: str, delay: float, *, give_up: bool) -> None:
        with self.session() as s:
            item = s.get(PushItem, item_id)
            assert item is not None
            item.attempts += 1
            item.last_error = error[:500]
            if give_up:
                item.state = "failed"
            else:
                item.next_attempt_at = utcnow() + timedelta(seconds=delay)

    def ghost(self, matrix_id: str) -> tuple[str | None, str | None]:
        """(device_id, access_token) of a ghost or the bot, if it has logged in before."""
        with self.session() as s:
            g = s.get(Ghost, matrix_id)
            if g is None or g.access_token_enc is None:
                return None, None
            token = self.box.open(g.access_token_enc, f"ghosts:token:{matrix_id}").decode()
            return g.device_id, token

    def save_ghost(
        self, matrix_id: str, display_name: str, device_id: str, access_token: str
    ) -> None:
        with self.session() as s:
            g = s.get(Ghost, matrix_id) or Ghost(matrix_id=matrix_id)
            g.display_name = display_name
            g.device_id = device_id
            g.access_token_enc = self.box.seal(access_token.encode(), f"ghosts:token:{matrix_id}")
            s.add(g)

    # ------------------------------------------------------------------ escalation

    def seen_by_team(self, case_id: int, reader: Access, at: datetime) -> int:
        """A nurse read the room (a read receipt) or replied at ``at``: the case is
        acknowledged (no escalation), and the practice's messages delivered by then are
        ``received`` (their status pushed to the practice system). Returns how many
        messages were newly marked received."""
        with self.session() as s:
            unread = s.scalars(
                select(Communication)
                .join(OutboxItem, OutboxItem.communication_id == Communication.id)
                .where(
                    Communication.case_id == case_id,
                    Communication.direction == "to-provider",
                    Communication.read_at.is_(None),
                    OutboxItem.state == "done",
                    OutboxItem.done_at <= at,
                )
                .order_by(Communication.created_at)
            ).all()
            for comm in unread:
                comm.read_at = at
                resource = self._open_resource(comm)
                resource["received"] = at.isoformat()
                self._bump(comm, resource)
                self._queue_status(s, comm)
                self._audit(
                    s,
                    reader,
                    "message.received",
                    patient=self._patient_of(s, comm),
                    obj=f"Communication/{comm.id}",
                )
            # The case row last, as delivery does (message rows, then the case).
            s.execute(
                update(Case)
                .where(Case.id == case_id, Case.acknowledged_at.is_(None))
                .values(acknowledged_at=at)
            )
            return len(unread)

    def due_escalations(self, limits: dict[str, float], now: datetime) -> list[EscalationWork]:
        """Urgent messages delivered longer ago than their limit, that no nurse has
        acknowledged since, and that were not escalated yet."""
        out: list[EscalationWork] = []
        with self.session() as s:
            rows = s.execute(
                select(Communication, OutboxItem.done_at, Case)
                .join(OutboxItem, OutboxItem.communication_id == Communication.id)
                .join(Case, Case.id == Communication.case_id)
                .where(
                    Communication.direction == "to-provider",
                    Communication.priority.in_(list(limits)),
                    OutboxItem.state == "done",
                    Case.status == "open",
                    ~select(Escalation.id)
                    .where(Escalation.communication_id == Communication.id)
                    .exists(),
                )
            )
            for comm, delivered_at, case in rows:
                if delivered_at is None:
                    continue
                if case.acknowledged_at is not None and case.acknowledged_at >= delivered_at:
                    continue
                limit = limits[comm.priority]
                if delivered_at + timedelta(minutes=limit) > now:
                    continue
                msg = cases.message_from_dict(
                    self.box.open_json(comm.message_enc, f"communications:message:{comm.id}")
                )
                out.append(
                    EscalationWork(comm.id, self._case_ref(s, case), msg, delivered_at, limit)
                )
        return out

    def record_escalation(
        self, work: EscalationWork, to_provider_id: int | None, reason: str
    ) -> None:
        """Keep the escalation and tell the practice system through its Communication."""
        with self.session() as s:
            s.add(
                Escalation(
                    case_id=work.case.id,
                    communication_id=work.communication_id,
                    from_provider_id=work.case.provider.id,
                    to_provider_id=to_provider_id,
                    reason=reason,
                )
            )
            comm = s.get(Communication, work.communication_id)
            assert comm is not None
            resource = self._open_resource(comm)
            resource.setdefault("note", []).append({"time": utcnow().isoformat(), "text": reason})
            self._bump(comm, resource)
            self._audit(
                s,
                SYSTEM,
                "message.escalate",
                patient=self._patient_of(s, comm),
                obj=f"Communication/{comm.id}",
            )

    def case_escalations(self, case_id: int) -> list[str]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(Escalation.reason)
                    .where(Escalation.case_id == case_id)
                    .order_by(Escalation.id)
                )
            )

    def case_routing(self, case_id: int) -> list[str]:
        """Why the case went to its provider (the first routing decision of the case)."""
        with self.session() as s:
            reasons = s.scalar(
                select(RoutingDecision.reasons)
                .where(RoutingDecision.case_id == case_id)
                .order_by(RoutingDecision.id)
                .limit(1)
            )
            return [str(r) for r in reasons or []]

    def close_case(self, case_id: int, actor: str) -> None:
        """Close a case: its open messages get their final status (``completed``, with a
        note) so the practice systems see the end; a new message starts a new case."""
        now = utcnow()
        with self.session() as s:
            case = s.get(Case, case_id)
            assert case is not None
            case.status, case.updated_at, case.closed_at = "closed", now, now
            for comm in s.scalars(
                select(Communication).where(
                    Communication.case_id == case_id, Communication.direction == "to-provider"
                )
            ):
                resource = self._open_resource(comm)
                resource["status"] = comm.status = "completed"
                resource.setdefault("note", []).append(
                    {"time": now.isoformat(), "text": "Casus gesloten (case closed)"}
                )
                self._bump(comm, resource)
            self._audit(
                s,
                Access(actor, None, "matrix"),
                "case.close",
                patient=case.patient_key,
                obj=case.number,
            )

    def purge_closed_cases(self, closed_before: datetime, limit: int = 50) -> list[CaseRef]:
        """Retention (AVG): cases closed before ``closed_before`` lose their messages,
        files, queued work, escalations and stored room events; the case keeps its number
        and room (so the room can be purged on the homeserver), marked ``purged``, and
        the audit trail keeps every entry. Returns the purged cases."""
        purged: list[CaseRef] = []
        with self.session() as s:
            due = s.scalars(
                select(Case)
                .where(Case.status == "closed", Case.closed_at <= closed_before)
                .order_by(Case.closed_at)
                .limit(limit)
            ).all()
            for case in due:
                comms = select(Communication.id).where(Communication.case_id == case.id)
                s.execute(delete(StoredFile).where(StoredFile.communication_id.in_(comms)))
                s.execute(delete(PushItem).where(PushItem.communication_id.in_(comms)))
                s.execute(delete(Escalation).where(Escalation.case_id == case.id))
                s.execute(delete(OutboxItem).where(OutboxItem.case_id == case.id))
                s.execute(
                    update(RoutingDecision)
                    .where(RoutingDecision.case_id == case.id)
                    .values(case_id=None)
                )
                s.execute(delete(Communication).where(Communication.case_id == case.id))
                if case.room_id:
                    s.execute(delete(InboundEvent).where(InboundEvent.room_id == case.room_id))
                self._audit(
                    s,
                    SYSTEM,
                    "case.purge",
                    patient=case.patient_key,
                    obj=f"{case.number} (closed {case.closed_at:%Y-%m-%d})",
                )
                case.status, case.patient_key = "purged", ""
                purged.append(self._case_ref(s, case))
        return purged

    def rooms_to_erase(self, limit: int = 50) -> list[CaseRef]:
        """Purged cases whose room is still on the homeserver."""
        with self.session() as s:
            rows = s.scalars(
                select(Case)
                .where(Case.status == "purged", Case.room_id.is_not(None))
                .order_by(Case.closed_at)
                .limit(limit)
            ).all()
            return [self._case_ref(s, case) for case in rows]

    def room_erased(self, case_id: int) -> None:
        """The homeserver has purged the case's room: nothing is left but the audit trail."""
        with self.session() as s:
            case = s.get(Case, case_id)
            assert case is not None
            case.status = "erased"
            self._audit(s, SYSTEM, "case.room-purge", obj=f"{case.number} {case.room_id}")

    def escalations(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest escalations, for the admin page (case numbers, no patient data)."""
        with self.session() as s:
            names = {
                org_id: name
                for org_id, name in s.execute(select(Organisation.id, Organisation.name))
            }
            rows = s.execute(
                select(Escalation, Case.number)
                .join(Case, Case.id == Escalation.case_id)
                .order_by(Escalation.id.desc())
                .limit(limit)
            )
            return [
                {
                    "at": e.at.isoformat(),
                    "case": number,
                    "from_provider": names.get(e.from_provider_id),
                    "to_provider": names.get(e.to_provider_id) if e.to_provider_id else None,
                    "reason": e.reason,
                }
                for e, number in rows
            ]


def _latest_message_query(case_id: int) -> Any:
    return (
        select(Communication)
        .where(Communication.case_id == case_id, Communication.direction == "to-provider")
        .order_by(Communication.created_at.desc())
        .limit(1)
    )


def latest_message(store: Store, case_id: int) -> CaseMessage | None:
    """The newest GP message of a case (for the patient a reply is about)."""
    with store.session() as s:
        comm = s.scalar(_latest_message_query(case_id))
        if comm is None:
            return None
        return cases.message_from_dict(
            store.box.open_json(comm.message_enc, f"communications:message:{comm.id}")
        )
