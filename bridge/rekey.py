"""Key rotation: re-encrypt every sealed column under the current key, retire old keys.

    wijkbrug keys rotate
        add_current_key(keyring file)            new kid, old kids kept for reading
        for each table with ``_enc`` columns:
            batch of rows (one transaction) --open(old kid, aad)--> --seal(new kid, aad)-->
        audit: keys.rotate, keys.reencrypt
    wijkbrug keys retire
        count envelopes per kid --all old kids unused?--> retire_keys(file), audit keys.retire

Every batch is its own transaction, so a rotation that stops halfway (crash, Ctrl-C)
leaves each row either under its old key or under the new one: both are in the keyring,
so everything stays readable, and running it again (``--no-new-key``) finishes the job.
A row is only rewritten if its envelope is still the one that was read (compare and
set), so a running bridge that changed the row meanwhile is never overwritten.

The associated data of each column is the one :mod:`bridge.store` and
:mod:`bridge.directory` use (``communications:resource:<id>`` ...); an envelope moved to
another row still fails to open after re-encryption. A new ``_enc`` column that is not
listed in :data:`SEALED` makes rotation and retirement refuse: retiring a key that an
unlisted column still uses would lose that data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Column, Table, func, select, update

from bridge.audit import Access
from bridge.db import Base, Client, Communication, Ghost, InboundEvent, StoredFile
from bridge.secretbox import (
    RETIRE_BY_HAND,
    Keyring,
    KeyringError,
    SecretBox,
    SecretBoxError,
    add_current_key,
    envelope_kid,
    require_file_keyring,
    retire_keys,
)
from bridge.store import Store

log = logging.getLogger(__name__)

CLI = Access("cli", None, "cli", "beheer")
BATCH_SIZE = 500
UNREADABLE_KID = "?"  # a value that is not an envelope at all


@dataclass(frozen=True)
class SealedColumn:
    """A column of envelopes and the associated data that binds each to its row."""

    table: Table
    name: str
    aad: str  # a format string over the primary key, as the store writes it
    max_batch: int | None = None  # fewer rows per batch for large values (files)

    @property
    def key(self) -> str:
        return f"{self.table.name}.{self.name}"

    def aad_for(self, row_key: object) -> str:
        pk = _primary_key(self.table)
        return self.aad.format(**{pk.name: row_key})


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# The same strings as at every seal()/open() in bridge/store.py and bridge/directory.py.
SEALED: tuple[SealedColumn, ...] = (
    SealedColumn(_table(Communication), "resource_enc", "communications:resource:{id}"),
    SealedColumn(_table(Communication), "message_enc", "communications:message:{id}"),
    SealedColumn(_table(InboundEvent), "event_enc", "inbound_events:event:{event_id}"),
    SealedColumn(_table(Ghost), "access_token_enc", "ghosts:token:{matrix_id}"),
    SealedColumn(_table(Client), "push_token_enc", "clients:push_token:{id}"),
    SealedColumn(_table(StoredFile), "title_enc", "attachments:title:{id}", max_batch=20),
    SealedColumn(_table(StoredFile), "data_enc", "attachments:data:{id}", max_batch=20),
)


@dataclass
class TableReport:
    """What a re-encryption pass did to one table."""

    table: str
    rows: int = 0
    reencrypted: int = 0  # values sealed anew under the current key
    current: int = 0  # values that already were under the current key
    changed_meanwhile: int = 0  # rows the bridge rewrote while we read them (left alone)
    unreadable: list[str] = field(default_factory=list)  # row ids that did not open


def _primary_key(table: Table) -> Column[object]:
    (pk,) = table.primary_key.columns
    return pk


def unlisted_columns() -> list[str]:
    """``_enc`` columns of the schema that :data:`SEALED` does not know (must be none)."""
    known = {c.key for c in SEALED}
    return sorted(
        f"{t.name}.{c.name}"
        for t in Base.metadata.tables.values()
        for c in t.columns
        if c.name.endswith("_enc") and f"{t.name}.{c.name}" not in known
    )


def _check_listed() -> None:
    if unlisted := unlisted_columns():
        raise KeyringError(
            f"column(s) {', '.join(unlisted)} hold envelopes bridge.rekey does not know; "
            "add them to bridge.rekey.SEALED first"
        )


def _by_table() -> dict[Table, list[SealedColumn]]:
    tables: dict[Table, list[SealedColumn]] = {}
    for col in SEALED:
        tables.setdefault(col.table, []).append(col)
    return tables


def count_rows(store: Store) -> int:
    """How many rows a re-encryption pass visits (for a progress bar)."""
    with store.session() as s:
        return sum(
            int(s.scalar(select(func.count()).select_from(table)) or 0) for table in _by_table()
        )


def rotate_keyring(store: Store, path: Path, access: Access = CLI) -> Keyring:
    """Add a new current key to the keyring file (recorded in the audit trail)."""
    with store.session() as s:
        ring = add_current_key(path)
        store._audit(s, access, "keys.rotate", obj=f"keyring: new current key {ring.current}")
    return ring


def reencrypt(
    store: Store,
    box: SecretBox | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    access: Access = CLI,
) -> list[TableReport]:
    """Seal every envelope that is not under the current key anew, in batches of
    ``batch_size`` rows, one transaction each; ``progress`` gets the row count of each
    committed batch."""
    _check_listed()
    box = box or store.box
    reports = [
        _reencrypt_table(store, box, table, cols, batch_size, progress)
        for table, cols in _by_table().items()
    ]
    total = sum(r.reencrypted for r in reports)
    unreadable = sum(len(r.unreadable) for r in reports)
    with store.session() as s:
        store._audit(
            s,
            access,
            "keys.reencrypt",
            obj=f"key {box.current}: {total} value(s) re-encrypted, {unreadable} unreadable",
        )
    return reports


def _reencrypt_table(
    store: Store,
    box: SecretBox,
    table: Table,
    cols: list[SealedColumn],
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> TableReport:
    report = TableReport(table.name)
    batch_size = min([batch_size, *(c.max_batch for c in cols if c.max_batch)])
    pk = _primary_key(table)
    columns = [table.c[c.name] for c in cols]
    last: object = None
    while True:
        with store.session() as s:
            query = select(pk, *columns).order_by(pk).limit(batch_size)
            if last is not None:
                query = query.where(pk > last)
            rows = s.execute(query).all()
            current = box.current
            for row in rows:
                key, values = row[0], row[1:]
                new: dict[str, str] = {}
                old = []
                for col, column, value in zip(cols, columns, values, strict=True):
                    if value is None:
                        continue
                    if envelope_kid(value) == current:
                        report.current += 1
                        continue
                    aad = col.aad_for(key)
                    try:
                        plaintext = box.open(value, aad)
                    except SecretBoxError:
                        report.unreadable.append(str(key))
                        continue
                    new[col.name] = box.seal(plaintext, aad)
                    old.append(column == value)
                if new:
                    done = s.connection().execute(update(table).where(pk == key, *old).values(new))
                    if done.rowcount == 1:
                        report.reencrypted += len(new)
                    else:
                        report.changed_meanwhile += 1
            report.rows += len(rows)
        if rows:
            last = rows[-1][0]
            log.debug("re-encrypted %s up to %s", table.name, last)
            if progress is not None:
                progress(len(rows))
        if len(rows) < batch_size:
            return report


def key_usage(store: Store) -> dict[str, Counter[str]]:
    """For each sealed column (``table.column``), how many envelopes name each key id
    (``?``: a value that is not an envelope)."""
    _check_listed()
    usage: dict[str, Counter[str]] = {}
    with store.session() as s:
        for col in SEALED:
            counts: Counter[str] = Counter()
            column = col.table.c[col.name]
            values = s.scalars(
                select(column).where(column.is_not(None)).execution_options(yield_per=1000)
            )
            for value in values:
                counts[envelope_kid(value) or UNREADABLE_KID] += 1
            usage[col.key] = counts
    return usage


def kids_in_use(usage: dict[str, Counter[str]]) -> Counter[str]:
    """Envelopes per key id over every column."""
    total: Counter[str] = Counter()
    for counts in usage.values():
        total.update(counts)
    return total


def retirable(ring: Keyring, usage: dict[str, Counter[str]]) -> tuple[set[str], Counter[str]]:
    """(old keys no envelope uses, old keys still in use with their envelope counts)."""
    in_use = kids_in_use(usage)
    old = set(ring.keys) - {ring.current}
    still = Counter({kid: n for kid, n in in_use.items() if kid in old})
    return old - set(still), still


def retire(store: Store, path: Path, access: Access = CLI) -> set[str]:
    """Remove every old key from the keyring file; refused (nothing removed) while any
    envelope still uses one. Returns the retired key ids."""
    require_file_keyring(RETIRE_BY_HAND)
    ring = Keyring.load(path)
    free, still = retirable(ring, key_usage(store))
    if still:
        listed = ", ".join(f"{kid} ({n} value(s))" for kid, n in sorted(still.items()))
        raise KeyringError(
            f"old key(s) still in use: {listed}; run `wijkbrug keys rotate --no-new-key` first"
        )
    if free:
        with store.session() as s:
            retire_keys(path, free)
            store._audit(s, access, "keys.retire", obj=f"keyring: {', '.join(sorted(free))}")
    return free
