"""Cases: what a case room is called and what its messages say (pure).

Room state (name, topic) is not end-to-end encrypted, so it carries only a neutral case
number, the care type and the provider. Who the patient is travels inside the first
encrypted message of the case, with a readable text body for any Matrix client and the
structured FHIR resource beside it.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Any

from bridge.canonical import (
    Attachment,
    CareType,
    CaseMessage,
    Identifier,
    Party,
    Patient,
    Priority,
    Reply,
)

# Keys of our structured content in Matrix events (namespaced, like de.gematik.fhir).
FHIR_KEY = "nl.wijkbrug.fhir"
CASE_KEY = "nl.wijkbrug.case"

_PRIORITY_NL = {
    Priority.ROUTINE: None,
    Priority.URGENT: "SPOED",
    Priority.ASAP: "ZO SNEL MOGELIJK",
    Priority.STAT: "DIRECT",
}


def case_number(case_id: int) -> str:
    """A neutral, human-friendly case number: ``WB-000042``."""
    return f"WB-{case_id:06d}"


def room_name(number: str, care_type: CareType) -> str:
    return f"Casus {number} · {care_type.display}"


def room_topic(number: str, care_type: CareType, practice: str, provider: str) -> str:
    return (
        f"Wijkbrug casus {number} ({care_type.display}) tussen {practice} en {provider}. "
        "Patiëntgegevens staan alleen in de versleutelde berichten."
    )


def ghost_display_name(sender: Party) -> str:
    """``Dr. A. Jansen (Huisartsenpraktijk De Pijp)``."""
    name = sender.name if sender.name.lower().startswith("dr") else f"Dr. {sender.name}"
    return f"{name} ({sender.organisation_name})" if sender.organisation_name else name


def _format_date(value: date | None) -> str:
    return value.strftime("%d-%m-%Y") if value else "onbekend"


def _format_postcode(postcode: str) -> str:
    return f"{postcode[:4]} {postcode[4:]}".strip()


def patient_context_lines(patient: Patient) -> list[str]:
    return [
        f"Patiënt: {patient.name or 'naam onbekend'}",
        f"Geboortedatum: {_format_date(patient.birth_date)}",
        f"BSN: {patient.bsn or 'onbekend'}",
        f"Postcode: {_format_postcode(patient.postcode)}",
    ]


def message_body(msg: CaseMessage, number: str, *, first: bool) -> str:
    """The readable text of a GP message in the room; the first one carries the patient."""
    lines: list[str] = []
    urgency = _PRIORITY_NL[msg.priority]
    if first:
        lines.append(f"Nieuwe casus {number} · {msg.care_type.display}")
        lines.extend(patient_context_lines(msg.patient))
        lines.append("")
    if urgency:
        lines.append(f"[{urgency}]")
    lines.append(msg.text)
    return "\n".join(lines)


def message_content(
    msg: CaseMessage, number: str, communication_id: str, *, first: bool
) -> dict[str, Any]:
    """The ``m.room.message`` content a ghost sends (it is encrypted before sending)."""
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": message_body(msg, number, first=first),
        CASE_KEY: {
            "number": number,
            "care_type": msg.care_type.value,
            "priority": msg.priority.value,
            "communication": communication_id,
            "patient_context": first,
        },
    }
    if msg.resource:
        content[FHIR_KEY] = msg.resource
    return content


# -- canonical message <-> plain dict, for storing it (encrypted) and reading it back --


def _attachments_to_list(attachments: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    """What is kept of a message's files with the message: never their contents."""
    return [
        {
            "id": a.id,
            "content_type": a.content_type,
            "title": a.title,
            "size": a.size,
            "sha256": a.sha256,
        }
        for a in attachments
    ]


def _attachments_from_list(items: list[dict[str, Any]] | None) -> tuple[Attachment, ...]:
    return tuple(Attachment(**item) for item in items or ())


def message_to_dict(msg: CaseMessage) -> dict[str, Any]:
    # The resource is JSON already: taken as it is, not copied by asdict() element by element.
    data = asdict(replace(msg, attachments=(), resource={}))
    data["resource"] = msg.resource
    data["attachments"] = _attachments_to_list(msg.attachments)
    data["care_type"] = msg.care_type.value
    data["priority"] = msg.priority.value
    data["sent"] = msg.sent.isoformat() if msg.sent else None
    data["patient"]["birth_date"] = (
        msg.patient.birth_date.isoformat() if msg.patient.birth_date else None
    )
    return data


def message_from_dict(data: dict[str, Any]) -> CaseMessage:
    patient = dict(data["patient"])
    patient["birth_date"] = (
        date.fromisoformat(patient["birth_date"]) if patient["birth_date"] else None
    )
    sender = dict(data["sender"])
    sender["identifiers"] = tuple(Identifier(**i) for i in sender.get("identifiers", ()))
    return CaseMessage(
        identifier=Identifier(**data["identifier"]),
        care_type=CareType(data["care_type"]),
        patient=Patient(**patient),
        sender=Party(**sender),
        text=data["text"],
        priority=Priority(data["priority"]),
        sent=datetime.fromisoformat(data["sent"]) if data["sent"] else None,
        recipient_ura=data.get("recipient_ura"),
        resource=data.get("resource") or {},
        attachments=_attachments_from_list(data.get("attachments")),
        reply_room=data.get("reply_room"),
    )


def reply_to_dict(reply: Reply) -> dict[str, Any]:
    data = asdict(replace(reply, attachments=()))
    data["attachments"] = _attachments_to_list(reply.attachments)
    data["care_type"] = reply.care_type.value
    data["sent"] = reply.sent.isoformat()
    if reply.patient is not None:
        data["patient"]["birth_date"] = (
            reply.patient.birth_date.isoformat() if reply.patient.birth_date else None
        )
    return data


def reply_from_dict(data: dict[str, Any]) -> Reply:
    patient = None
    if data.get("patient"):
        fields = dict(data["patient"])
        fields["birth_date"] = (
            date.fromisoformat(fields["birth_date"]) if fields["birth_date"] else None
        )
        patient = Patient(**fields)
    sender = dict(data["sender"])
    sender["identifiers"] = tuple(Identifier(**i) for i in sender.get("identifiers", ()))
    return Reply(
        id=data["id"],
        in_response_to=data["in_response_to"],
        case_number=data["case_number"],
        care_type=CareType(data["care_type"]),
        sender=Party(**sender),
        text=data["text"],
        sent=datetime.fromisoformat(data["sent"]),
        patient=patient,
        extra=data.get("extra") or {},
        attachments=_attachments_from_list(data.get("attachments")),
    )
