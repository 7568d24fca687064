"""The canonical case message: what every dialect normalises into.

Pure data, no I/O. A dialect adapter parses its input into a :class:`CaseMessage`
(a GP's message about a patient) and renders a :class:`Reply` (a nurse's answer) back
into its own format. The FHIR R4 ``Communication`` of DESIGN.md is the wire shape of
this model; ``CaseMessage.resource`` keeps the normalised R4 JSON for storage and
for the structured payload of the Matrix event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

CARE_TYPE_SYSTEM = "https://wijkbrug.nl/fhir/CodeSystem/care-type"

# The practice-system dialects (one module each in adapters/); a client speaks one.
DIALECTS = ("fhir-r4", "fhir-stu3", "edifact-medvri")


class CareType(Enum):
    """The pinned care types (CodeSystem ``care-type``)."""

    WIJKVERPLEGING = "wijkverpleging"
    WONDZORG = "wondzorg"
    PALLIATIEVE_ZORG = "palliatieve-zorg"
    OUDERENZORG = "ouderenzorg"
    GGZ = "ggz"
    MEDICATIE = "medicatie"

    @property
    def display(self) -> str:
        return _CARE_TYPE_DISPLAY[self]


_CARE_TYPE_DISPLAY = {
    CareType.WIJKVERPLEGING: "Wijkverpleging",
    CareType.WONDZORG: "Wondzorg",
    CareType.PALLIATIEVE_ZORG: "Palliatieve zorg",
    CareType.OUDERENZORG: "Ouderenzorg",
    CareType.GGZ: "GGZ",
    CareType.MEDICATIE: "Medicatie",
}


class Priority(Enum):
    """FHIR ``request-priority``."""

    ROUTINE = "routine"
    URGENT = "urgent"
    ASAP = "asap"
    STAT = "stat"


@dataclass(frozen=True)
class Identifier:
    system: str
    value: str


@dataclass(frozen=True)
class Patient:
    """What the receiving nurse needs to recognise the patient. Patient data: never log it."""

    bsn: str
    postcode: str  # normalised, e.g. "1092AB"
    name: str | None = None
    birth_date: date | None = None


@dataclass(frozen=True)
class Party:
    """The author of a message: a practitioner and the organisation she works for."""

    name: str
    organisation_name: str | None = None
    agb: str | None = None  # practitioner AGB (or UZI/BIG in ``identifiers``)
    organisation_agb: str | None = None
    organisation_ura: str | None = None
    matrix_id: str | None = None
    identifiers: tuple[Identifier, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """A file in a message: a wound photo, a letter as PDF. Its title and contents are
    patient data: never log them. ``data`` travels only until the file is stored; after
    that ``id`` finds it (``GET /fhir/Binary/{id}``)."""

    content_type: str
    title: str
    size: int
    sha256: str  # hex digest of the contents
    id: str = ""
    data: bytes = field(default=b"", repr=False, compare=False)
    where: str = field(default="", compare=False)  # FHIRPath of its payload, for issues


@dataclass(frozen=True)
class CaseMessage:
    """A GP practice's message about a patient, to be routed to a provider team."""

    identifier: Identifier  # the sender's own business identifier; idempotency key
    care_type: CareType
    patient: Patient
    sender: Party
    text: str
    priority: Priority = Priority.ROUTINE
    sent: datetime | None = None
    recipient_ura: str | None = None  # empty = route by preferred provider
    resource: dict[str, Any] = field(default_factory=dict)  # normalised R4 JSON
    attachments: tuple[Attachment, ...] = ()
    # Where the sender hears about it outside the case room: a GP's direct chat with the
    # bot, for a case she started from chat (a practice system has its own channel).
    reply_room: str | None = None


@dataclass(frozen=True)
class Reply:
    """A message from the case room going back to the practice (a nurse's answer)."""

    id: str  # Wijkbrug's logical id of the Communication
    in_response_to: str  # logical id of the Communication it answers
    case_number: str
    care_type: CareType
    sender: Party
    text: str
    sent: datetime
    patient: Patient | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class ProviderReply:
    """A nurse's answer written in her care record system (ECD) and posted by it."""

    identifier: Identifier  # the ECD's own; idempotency key
    in_response_to: str  # Wijkbrug's id of the practice's message it answers
    sender: Party  # the nurse (her organisation is the client's)
    text: str
    attachments: tuple[Attachment, ...] = ()
