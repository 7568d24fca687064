"""Writing and reading the audit trail in the database (see :mod:`bridge.audit`).

An entry is written in the same transaction as the access it records, so there is no
access without its entry. The chain head row is locked (PostgreSQL: ``FOR UPDATE``;
SQLite transactions begin IMMEDIATE) so concurrent writers extend one chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.audit import GENESIS, Access, AuditEntry, entry_hash, verify
from bridge.db import AuditLog, Meta, utcnow

HEAD_KEY = "audit_head"


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
        head = s.get(Meta, HEAD_KEY, with_for_update=True)
        prev_id, prev_hash = (
            (int(head.value["id"]), str(head.value["hash"])) if head else (0, GENESIS)
        )
        entry = AuditEntry(
            id=prev_id + 1,
            at=utcnow(),
            actor=access.actor[:300],
            org=access.org,
            action=action,
            patient=patient,
            target=obj,
            origin=(access.origin or None) and access.origin[:100],
            reason=access.reason,
            prev_hash=prev_hash,
            hash="",
        )
        digest = entry_hash(entry.fields())
        s.add(AuditLog(**{**entry.fields(), "at": entry.at, "hash": digest}))
        value = {"id": entry.id, "hash": digest}
        if head is None:
            s.add(Meta(key=HEAD_KEY, value=value))
        else:
            head.value = value
        s.flush()

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
