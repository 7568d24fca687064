"""Commands typed in a chat client (pure parsing and the texts the bot answers with).

A GP starts a case in a direct chat with the bot::

    !nieuw 1092AB wondzorg Mw. de Vries (12-03-1948), wondcontrole na ontslag [--spoed]
           [BSN 999911120]

and anyone in a case room can ask ``!help``, ``!status``, ``!route`` or ``!sluit``. Answers
are Dutch, with an English line in ``!help``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from bridge.canonical import (
    CARE_TYPE_SYSTEM,
    CareType,
    CaseMessage,
    Identifier,
    Party,
    Patient,
    Priority,
)
from bridge.identifiers import BSN_SYSTEM, is_valid_bsn, normalise_postcode

CHAT_SYSTEM = "https://wijkbrug.nl/fhir/NamingSystem/chat-event"

DM_HELP = (
    "Wijkbrug — start een casus met:\n"
    "!nieuw <postcode> <zorgsoort> <patiënt (dd-mm-jjjj)>, <bericht> [--spoed] [BSN <nummer>]\n"
    "bijvoorbeeld: !nieuw 1092AB wondzorg Mw. de Vries (12-03-1948), wondcontrole na ontslag\n"
    f"Zorgsoorten: {', '.join(c.value for c in CareType)}\n"
    "(English: start a case with !nieuw <postcode> <care type> <patient (dd-mm-yyyy)>, "
    "<message>)"
)
CASE_HELP = (
    "In deze casusruimte: !status (wie is uitgenodigd en wie doet mee), !route (waarom deze "
    "aanbieder), !sluit (casus afsluiten), !help.\n"
    "(English: !status, !route, !sluit = close the case, !help.)"
)
NOT_PERMITTED = (
    "U kunt vanuit de chat geen casus starten: de regio heeft dat voor uw account of "
    "server niet aangezet. Vraag uw regio-coördinator. "
    "(Starting cases from chat is not enabled for your account or server.)"
)

REFUSAL = (
    "Sorry, u staat niet in het regionale adresboek van Wijkbrug, dus ik kan geen casus voor u "
    "starten. Vraag uw regio-coördinator om u toe te voegen. "
    "(Sorry, you are not in Wijkbrug's regional directory.)"
)

_NEW = re.compile(
    r"^!nieuw\s+(?P<pc>[0-9]{4}\s?[A-Za-z]{2})\s+(?P<care>[a-z\-]+)\s+(?P<rest>.+)$", re.S
)
_BIRTH = re.compile(r"\((?P<d>\d{1,2})-(?P<m>\d{1,2})-(?P<y>\d{4})\)")
_BSN = re.compile(r"\bBSN[:\s]*(?P<bsn>\d{9})\b", re.I)


class CommandError(ValueError):
    """A command that cannot be carried out; the message is the answer to show."""


@dataclass(frozen=True)
class NewCase:
    postcode: str
    care_type: CareType
    patient_name: str | None
    birth_date: date | None
    bsn: str | None
    text: str
    urgent: bool


def parse_new_case(line: str) -> NewCase:
    """``!nieuw ...`` as a :class:`NewCase`, or :class:`CommandError` with usage help."""
    match = _NEW.match(line.strip())
    if match is None:
        raise CommandError("Dat begrijp ik niet.\n" + DM_HELP)
    postcode = normalise_postcode(match["pc"])
    if postcode is None:
        raise CommandError(f"{match['pc']} is geen Nederlandse postcode.")
    try:
        care_type = CareType(match["care"])
    except ValueError:
        kinds = ", ".join(c.value for c in CareType)
        raise CommandError(f"Onbekende zorgsoort; kies uit: {kinds}.") from None
    rest = match["rest"]
    urgent = "--spoed" in rest
    rest = rest.replace("--spoed", " ")
    bsn = None
    if found := _BSN.search(rest):
        bsn = found["bsn"]
        if not is_valid_bsn(bsn):
            raise CommandError("Dat BSN klopt niet (elfproef); laat het weg of verbeter het.")
        rest = rest[: found.start()] + rest[found.end() :]
    name = None
    birth = None
    if born := _BIRTH.search(rest):
        try:
            birth = date(int(born["y"]), int(born["m"]), int(born["d"]))
        except ValueError:
            raise CommandError("De geboortedatum bestaat niet (dd-mm-jjjj).") from None
        name = rest[: born.start()].strip(" ,") or None
        rest = rest[born.end() :]
    text = " ".join(rest.strip(" ,").split())
    if not text:
        raise CommandError("Zet na de patiënt nog een bericht voor de wijkverpleging.")
    if bsn is None and (name is None or birth is None):
        raise CommandError(
            "Noem de patiënt met naam en geboortedatum, bijvoorbeeld Mw. de Vries (12-03-1948), "
            "of geef het BSN."
        )
    return NewCase(postcode, care_type, name, birth, bsn, text, urgent)


def case_message(new: NewCase, sender: Party, event_id: str, now: datetime) -> CaseMessage:
    """The canonical message of a case started from chat, with a minimal R4 resource."""
    patient = Patient(
        bsn=new.bsn or "", postcode=new.postcode, name=new.patient_name, birth_date=new.birth_date
    )
    contained: dict[str, object] = {
        "resourceType": "Patient",
        "id": "patient",
        "address": [{"postalCode": new.postcode}],
    }
    if new.bsn:
        contained["identifier"] = [{"system": BSN_SYSTEM, "value": new.bsn}]
    if new.patient_name:
        contained["name"] = [{"text": new.patient_name}]
    if new.birth_date:
        contained["birthDate"] = new.birth_date.isoformat()
    resource = {
        "resourceType": "Communication",
        "contained": [contained],
        "identifier": [{"system": CHAT_SYSTEM, "value": event_id}],
        "status": "in-progress",
        "category": [{"coding": [{"system": CARE_TYPE_SYSTEM, "code": new.care_type.value}]}],
        "priority": "urgent" if new.urgent else "routine",
        "subject": {"reference": "#patient"},
        "sent": now.isoformat(),
        "sender": {
            "identifier": {
                "system": "https://wijkbrug.nl/fhir/NamingSystem/matrix-user-id",
                "value": sender.matrix_id,
            },
            "display": sender.name,
        },
        "payload": [{"contentString": new.text}],
    }
    return CaseMessage(
        identifier=Identifier(CHAT_SYSTEM, event_id),
        care_type=new.care_type,
        patient=patient,
        sender=sender,
        text=new.text,
        priority=Priority.URGENT if new.urgent else Priority.ROUTINE,
        sent=now,
        resource=resource,
    )
