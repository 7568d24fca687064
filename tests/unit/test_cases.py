"""What a case room is called and what its messages say: no patient data in room state."""

from __future__ import annotations

from datetime import UTC, date, datetime

from bridge import cases
from bridge.canonical import CareType, CaseMessage, Identifier, Party, Patient, Priority

MSG = CaseMessage(
    identifier=Identifier("urn:oid:2.16.528.1.1007.3.3.01234567.1", "m1"),
    care_type=CareType.WONDZORG,
    patient=Patient(
        bsn="999911120", postcode="1092AB", name="J. de Vries", birth_date=date(1948, 3, 12)
    ),
    sender=Party(
        name="A. Jansen",
        organisation_name="Huisartsenpraktijk De Pijp",
        agb="01000001",
        identifiers=(Identifier("x", "y"),),
    ),
    text="Wondcontrole graag",
    priority=Priority.URGENT,
    sent=datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
    resource={"resourceType": "Communication"},
)


def test_room_state_is_neutral() -> None:
    name = cases.room_name("WB-000042", CareType.WONDZORG)
    topic = cases.room_topic("WB-000042", CareType.WONDZORG, "Praktijk", "Thuiszorg Oost")
    assert name == "Casus WB-000042 · Wondzorg"
    for text in (name, topic):
        assert "999911120" not in text and "Vries" not in text and "1092" not in text


def test_first_message_carries_patient_context_later_ones_do_not() -> None:
    first = cases.message_content(MSG, "WB-000042", "c1", first=True)
    assert "BSN: 999911120" in first["body"] and "J. de Vries" in first["body"]
    assert "12-03-1948" in first["body"] and "1092 AB" in first["body"]
    assert "[SPOED]" in first["body"] and first["body"].endswith("Wondcontrole graag")
    assert first[cases.FHIR_KEY] == {"resourceType": "Communication"}
    assert first[cases.CASE_KEY]["patient_context"] is True
    later = cases.message_content(MSG, "WB-000042", "c2", first=False)
    assert "999911120" not in later["body"] and later[cases.CASE_KEY]["patient_context"] is False


def test_ghost_display_name() -> None:
    assert cases.ghost_display_name(MSG.sender) == "Dr. A. Jansen (Huisartsenpraktijk De Pijp)"
    assert cases.ghost_display_name(Party(name="dr. B. Bakker")) == "dr. B. Bakker"


def test_message_round_trips_through_its_stored_form() -> None:
    assert cases.message_from_dict(cases.message_to_dict(MSG)) == MSG
    assert cases.case_number(7) == "WB-000007"
