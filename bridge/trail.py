"""Writing and reading the audit trail in the database (see :mod:`bridge.audit`).

An entry is written in the same transaction as the access it records, so there is no
access without its entry. The entries of a transaction are chained when it commits
(:meth:`AuditTrail.seal_audit`, a ``before_commit`` hook): the chain head row is locked
(PostgreSQL: ``FOR UPDATE``; SQLite transactions begin IMMEDIATE) so concurrent writers
extend one chain. Taking that lock last, after every other row the transaction touches,
is what keeps it out of deadlocks: whoever holds the head waits for nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from bridge.audit import GENESIS, Access, AuditEntry, entry_hash, verify
from bridge.db import AuditLog, Meta, utcnow

HEAD_KEY = "audit_head"
PENDING_KEY = "wijkbrug.audit.pending"

# Built once: every write of the bridge runs them.
_META = cast(Table, Meta.__table__)
_ENTRIES = cast(Table, AuditLog.__table__)
_HEAD = select(_META.c.value).where(_META.c.key == HEAD_KEY).with_for_update()
_HEAD_MOVED = update(_META).where(_META.c.key == HEAD_KEY).values(value=bindparam("head"))


class AuditTrail:
    """Audit-trail part of the Store."""

    def session(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def _audit(
        self,
        s: Session,
        access: Access,
        action: str,
        *,
        patient: str | None = None,
        obj: str | None = None,
    ) -> None:
        """Record an access; it joins the chain when the transaction commits."""
        entry = AuditEntry(
            id=0,
            at=utcnow(),
            actor=access.actor[:300],
            org=access.org,
            action=action,
            patient=patient,
            target=obj,
            origin=(access.origin or None) and access.origin[:100],
            reason=access.reason,
            prev_hash="",
            hash="",
        )
        s.info.setdefault(PENDING_KEY, []).append(entry)

    def seal_audit(self, s: Session) -> None:
        """Chain the transaction's entries onto the head (``before_commit`` of every session)."""
        pending: list[AuditEntry] = s.info.pop(PENDING_KEY, [])
        if not pending:
            return
        s.flush()  # every other row lock first; the head comes last
        # Plain statements, not ORM objects: every write of the bridge ends here.
        conn = s.connection()
        head = conn.execute(_HEAD).scalar()
        prev_id, prev_hash = (int(head["id"]), str(head["hash"])) if head else (0, GENESIS)
        rows = []
        for entry in pending:
            chained = replace(entry, id=prev_id + 1, prev_hash=prev_hash)
            prev_id, prev_hash = chained.id, entry_hash(chained.fields())
            rows.append({**chained.fields(), "at": chained.at, "hash": prev_hash})
        conn.execute(_ENTRIES.insert(), rows)
        value = {"id": prev_id, "hash": prev_hash}
        if head is None:
            conn.execute(_META.insert(), {"key": HEAD_KEY, "value": value})
        else:
            conn.execute(_HEAD_MOVED, {"head": value})

    def audit_entries(
        self,
        *,
        patient: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[AuditEntry]:
        with self.session() as s:
            query = select(AuditLog).order_by(AuditLog.id)
            if patient is not None:
                query = query.where(AuditLog.patient == patient)
            if start is not None:
                query = query.where(AuditLog.at >= start)
            if end is not None:
                query = query.where(AuditLog.at < end)
            for row in s.scalars(query.execution_options(yield_per=1000)):
                yield AuditEntry(
                    row.id,
                    row.at,
                    row.actor,
                    row.org,
                    row.action,
                    row.patient,
                    row.target,
                    row.origin,
                    row.reason,
                    row.prev_hash,
                    row.hash,
                )

    def record_export(self, patient: str, actor: str = "cli") -> None:
        """An export of a patient's log is itself an access to record."""
        with self.session() as s:
            self._audit(
                s, Access(actor, None, "cli", "inzage patiënt"), "audit.export", patient=patient
            )

    def verify_audit(self) -> list[str]:
        """Problems in the chain (empty: intact)."""
        with self.session() as s:
            head = s.get(Meta, HEAD_KEY)
            stored = (int(head.value["id"]), str(head.value["hash"])) if head else None
        return verify(self.audit_entries(), stored)
