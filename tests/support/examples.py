"""Example data shared by tests: a small region and a GP message about a test patient."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from bridge.canonical import CareType, CaseMessage, Identifier, Party, Patient
from bridge.store import Store

BSN = "999911120"


def message(
    ident: str = "msg-1", bsn: str = BSN, text_: str = "Wondcontrole na ontslag"
) -> CaseMessage:
    return CaseMessage(
        identifier=Identifier("urn:oid:2.16.528.1.1007.3.3.01234567.1", ident),
        care_type=CareType.WONDZORG,
        patient=Patient(
            bsn=bsn, postcode="1092AB", name="J. de Vries", birth_date=date(1948, 3, 12)
        ),
        sender=Party(
            name="A. Jansen", organisation_name="Huisartsenpraktijk De Pijp", agb="01234567"
        ),
        text=text_,
        resource={"resourceType": "Communication"},
    )


def render(comm_id: str, number: str, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "id": comm_id,
        "status": "in-progress",
        "meta": {"versionId": "1", "lastUpdated": now.isoformat()},
        "identifier": [{"value": number}],
    }


def region(store: Store) -> None:
    store.add_org("practice", "Huisartsenpraktijk De Pijp", agb="01234567", ura=None)
    store.add_org("practice", "Huisartsenpraktijk Oost", agb="01234568", ura=None)
    store.add_org("provider", "Thuiszorg Oost", agb=None, ura="12345678")
    store.add_team("12345678", "Team Watergraafsmeer", ["@nurse1:localhost", "@nurse2:localhost"])
    store.add_route(CareType.WONDZORG, 1091, 1098, "12345678")
