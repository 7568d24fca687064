"""The NEN 7513 audit trail as a hash chain (pure part).

Every access to patient data and every admin change becomes an entry: who (actor and
organisation), whom (a pseudonym of the patient: a keyed hash of the BSN), what (action
and object), when, from where (origin) and why (reason). Each entry's hash covers its
fields and the previous entry's hash:

    hash[n] = SHA-256( hash[n-1] || canonical-JSON(entry[n] without hash) )

so changing, deleting or reordering an entry breaks the chain from that point on;
``verify`` says where. The chain head (last id and hash) is kept apart, so cutting off
the newest entries is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

GENESIS = "0" * 64


@dataclass(frozen=True)
class Access:
    """Who is touching patient data, from where, and why (the NEN 7513 context)."""

    actor: str
    org: str | None = None
    origin: str | None = None
    reason: str = "zorgverlening"


SYSTEM = Access("system", None, "wijkbrug", "aflevering")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str  # "client:3 his-test", "matrix:@nurse1:localhost", "admin:ria", "system"
    org: str | None  # AGB/URA of the actor's organisation
    action: str  # message.create, message.deliver, message.read, reply.create, ...
    patient: str | None  # pseudonym (keyed hash of the BSN), never the BSN
    target: str | None  # what was touched: Communication/<id>, case number, route id
    origin: str | None  # client address, "matrix", "cli"
    reason: str  # purpose of use, e.g. "zorgverlening"
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, object]:
        # Every field is a plain value: a shallow copy is asdict()'s answer, without its
        # recursive copying (this runs for every entry written).
        data: dict[str, object] = {k: v for k, v in vars(self).items() if k != "hash"}
        data["at"] = self.at.isoformat()
        return data


def entry_hash(fields: dict[str, object]) -> str:
    """The hash of an entry from its fields (including ``prev_hash``)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify(entries: Iterable[AuditEntry], head: tuple[int, str] | None) -> list[str]:
    """Problems in the chain, in order (empty: intact). ``head`` is the stored (id, hash)
    of the newest entry."""
    problems: list[str] = []
    expected_prev, expected_id = GENESIS, 1
    last: AuditEntry | None = None
    for entry in entries:
        if entry.id != expected_id:
            problems.append(f"entry {expected_id}: missing (next is {entry.id}), or reordered")
        if entry.prev_hash != expected_prev:
            problems.append(f"entry {entry.id}: does not follow the entry before it")
        if entry_hash(entry.fields()) != entry.hash:
            problems.append(f"entry {entry.id}: changed after it was written")
        expected_prev, expected_id, last = entry.hash, entry.id + 1, entry
    if head is not None and head != (0, GENESIS) and (last is None or (last.id, last.hash) != head):
        problems.append(f"the newest entries are missing: the chain should end at {head[0]}")
    return problems
