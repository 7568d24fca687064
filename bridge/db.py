"""Database schema (SQLAlchemy 2) and engine set-up for SQLite and PostgreSQL.

Columns ending in ``_enc`` hold :mod:`bridge.secretbox` envelopes (AES-GCM, bound to the
row), never plaintext patient data. ``patient_key`` is a keyed hash of the BSN so that
cases can be found without storing the BSN in the clear.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    """A practice, a home-care provider or a huisartsenpost."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # practice | provider | hap
    name: Mapped[str] = mapped_column(String(200))
    agb: Mapped[str | None] = mapped_column(String(8), unique=True)
    ura: Mapped[str | None] = mapped_column(String(8), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Team(Base):
    """A provider's group of nurses (Matrix user IDs)."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    matrix_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class Wijk(Base):
    """A named neighbourhood: a set of PC4 areas (e.g. Watergraafsmeer = 1091-1098)."""

    __tablename__ = "wijken"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WijkArea(Base):
    __tablename__ = "wijk_areas"
    wijk_id: Mapped[int] = mapped_column(ForeignKey("wijken.id"), primary_key=True)
    pc4: Mapped[int] = mapped_column(Integer, primary_key=True)


class TeamCareType(Base):
    """A care type a team serves (none listed: all)."""

    __tablename__ = "team_care_types"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    care_type: Mapped[str] = mapped_column(String(32), primary_key=True)


class TeamArea(Base):
    """A PC4 range a team serves (none listed: all of its provider's routes)."""

    __tablename__ = "team_areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    pc4_from: Mapped[int] = mapped_column(Integer)
    pc4_to: Mapped[int] = mapped_column(Integer)


class Unavailability(Base):
    """A provider or team marked full ("vol tot vrijdag") for a care type, for a period."""

    __tablename__ = "unavailability"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    care_type: Mapped[str | None] = mapped_column(String(32))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Practitioner(Base):
    """A GP (or assistant) of a practice, with the Matrix ID she chats with, if any."""

    __tablename__ = "practitioners"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))
    agb: Mapped[str | None] = mapped_column(String(8), unique=True)
    uzi: Mapped[str | None] = mapped_column(String(16))
    big: Mapped[str | None] = mapped_column(String(16))
    matrix_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdminChange(Base):
    """Every change to the directory and routes: who, what, before and after."""

    __tablename__ = "admin_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdminToken(Base):
    """An admin API / admin page credential: a role and a scope, stored as a hash only.

    Roles: ``region-admin`` (everything), ``wijk-coordinator`` (routes of the wijken in
    ``scope``), ``org-admin`` (teams, members and availability of the organisation whose
    AGB/URA is in ``scope``)."""

    __tablename__ = "admin_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    scope: Mapped[Any] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RoutingDecision(Base):
    """A routing decision taken for a message (shown to admins; no patient data)."""

    __tablename__ = "routing_decisions"
    __table_args__ = (Index("ix_routing_decisions_at", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    care_type: Mapped[str] = mapped_column(String(32))
    pc4: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(16), default="routine")
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    practice_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    reasons: Mapped[Any] = mapped_column(JSON, default=list)


class Escalation(Base):
    """An urgent case nobody acknowledged in time, offered to the next provider."""

    __tablename__ = "escalations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    communication_id: Mapped[str] = mapped_column(ForeignKey("communications.id"))
    from_provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    to_provider_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    reason: Mapped[str] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Route(Base):
    """Care type x PC4 range -> provider, ranked (1 = preferred)."""

    __tablename__ = "routes"
    __table_args__ = (Index("ix_routes_care_type", "care_type"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    care_type: Mapped[str] = mapped_column(String(32))
    pc4_from: Mapped[int] = mapped_column(Integer)
    pc4_to: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    rank: Mapped[int] = mapped_column(Integer, default=1)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wijk_id: Mapped[int | None] = mapped_column(ForeignKey("wijken.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Client(Base):
    """An integration client (a HIS or ECD): its token is stored as a SHA-256 hash only."""

    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))
    dialect: Mapped[str] = mapped_column(String(32), default="fhir-r4")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Where replies are pushed (in the client's dialect); None: the client fetches them.
    push_url: Mapped[str | None] = mapped_column(String(500))
    push_token_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: never
    cert_sha256: Mapped[str | None] = mapped_column(String(64))  # mTLS at the proxy


class PushItem(Base):
    """A reply, or a status change of a practice's own message, to push to a client's
    endpoint; retried with backoff until done."""

    __tablename__ = "push_outbox"
    __table_args__ = (
        UniqueConstraint("client_id", "communication_id", "kind", name="uq_push_outbox_item"),
        Index("ix_push_due", "state", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    communication_id: Mapped[str] = mapped_column(ForeignKey("communications.id"))
    # "reply", or "status-N": version N of the practice's own message changed status.
    kind: Mapped[str] = mapped_column(String(40), default="reply", server_default="reply")
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Ghost(Base):
    """A Matrix user standing for a practice-system practitioner, with its own device."""

    __tablename__ = "ghosts"
    matrix_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(64))
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Case(Base):
    """One patient matter between one practice and one provider = one encrypted room."""

    __tablename__ = "cases"
    # One open case per patient, practice and provider; closed cases stay as history.
    __table_args__ = (
        Index(
            "uq_cases_open_patient",
            "patient_key",
            "practice_id",
            "provider_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    patient_key: Mapped[str] = mapped_column(String(64))
    practice_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    care_type: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # open | closed | purged (retention: messages deleted) | erased (and the room too)
    status: Mapped[str] = mapped_column(String(16), default="open")
    context_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a nurse first replied, or read the room after joining (escalation stops).
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Communication(Base):
    """A message of a case, in either direction, as the FHIR Communication clients see."""

    __tablename__ = "communications"
    __table_args__ = (
        UniqueConstraint("author_org_id", "identifier_system", "identifier_value"),
        Index("ix_communications_practice_updated", "practice_id", "last_updated"),
        Index("ix_communications_provider_updated", "provider_id", "last_updated"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    direction: Mapped[str] = mapped_column(String(16))  # to-provider | to-practice
    author_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    # The integration client that posted it (replies are pushed back to that system).
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    practice_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    # A nurse's message outside office hours also goes to the region's huisartsenpost.
    hap_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    identifier_system: Mapped[str] = mapped_column(String(255))
    identifier_value: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16), default="routine")
    resource_enc: Mapped[str] = mapped_column(Text)  # the FHIR resource clients see
    message_enc: Mapped[str] = mapped_column(Text)  # canonical fields for the Matrix side
    in_response_to: Mapped[str | None] = mapped_column(String(36))
    matrix_event_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # first read in the room
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxItem(Base):
    """Work that must reach the homeserver; retried with backoff until done."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    communication_id: Mapped[str] = mapped_column(ForeignKey("communications.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    # Which bridge process sends it: shard % workers.count == workers.index. 0 is the
    # bot's (process 0); a GP's ghost has a shard of its own (see bridge.service).
    shard: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    event_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AppserviceTransaction(Base):
    """A transaction id the homeserver pushed to us: stored before we answer 200."""

    __tablename__ = "as_transactions"
    txn_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event_count: Mapped[int] = mapped_column(Integer, default=0)


class StoredFile(Base):
    """A file of a message (a wound photo, a letter): title and contents encrypted."""

    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    communication_id: Mapped[str] = mapped_column(
        ForeignKey("communications.id", name="fk_attachments_communication"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)  # order within the message
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    title_enc: Mapped[str] = mapped_column(Text)
    data_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboundEvent(Base):
    """A room event from an appservice transaction, waiting to be handled (e.g. decrypted)."""

    __tablename__ = "inbound_events"
    __table_args__ = (Index("ix_inbound_due", "state", "next_attempt_at"),)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    txn_id: Mapped[str] = mapped_column(String(255))
    room_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(255))
    event_enc: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditLog(Base):
    """The NEN 7513 audit trail: a hash chain (see bridge.audit)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_patient_at", "patient", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(300))
    org: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    patient: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(300))
    origin: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(100))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Meta(Base):
    """Small key/value facts about the deployment (e.g. the bot's device)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


# The execution option that marks a read-only transaction (see make_sessionmaker).
READ_ONLY = "wijkbrug_read_only"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so the CLI and the bridge
    can write to the same file at the same time."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling breaks SAVEPOINTs (a released outermost
            # savepoint commits); let SQLAlchemy emit BEGIN itself (see _sqlite_begin).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE: take the write lock up front, so a transaction that read first
            # and writes later (the audit chain's head, the outbox) never finds its
            # snapshot stale. SQLite has one writer anyway. A read-only transaction (see
            # READ_ONLY) reads a snapshot beside that writer instead of queueing for it.
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # hide_parameters: SQL errors must not carry row values into logs.
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
    )


def make_sessionmaker(engine: Engine, *, read_only: bool = False) -> sessionmaker[Any]:
    """Sessions for writing, or (``read_only``) for reading only: those never take
    SQLite's write lock, and refuse to flush a change."""
    if not read_only:
        return sessionmaker(engine, expire_on_commit=False)
    readers = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    @event.listens_for(readers, "before_flush")
    def _refuse(session: Any, _context: Any, _instances: Any) -> None:
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("a change in a read-only session")

    return readers
