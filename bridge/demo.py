"""The demo region of the embedded stack: two practices, a huisartsenpost, two providers,
three Amsterdam wijken and their routes.

Loaded once into an empty database by ``wijkbrug dev``. Its integration tokens and the
demo Matrix passwords are kept in ``DIR/demo.json`` (mode 0600) so that a restart shows
the same ones; that file exists only for the demo.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from bridge.canonical import CareType
from bridge.store import Store

PRACTICES = [
    ("01234567", "Huisartsenpraktijk De Pijp"),
    ("01234568", "Huisartsenpraktijk Watergraafsmeer"),
]
PROVIDERS = [
    ("12345678", "Thuiszorg Oost", "Team Watergraafsmeer", ["nurse1", "nurse2"]),
    ("87654321", "Buurtzorg Centrum", "Team Centrum", ["nurse2"]),
]
# A few Amsterdam wijken, by their PC4 areas.
WIJKEN = {
    "Watergraafsmeer": [(1091, 1098)],
    "De Pijp": [(1071, 1079)],
    "Centrum": [(1011, 1018)],
}
# (care type, wijk, provider URA, rank)
ROUTES = [
    (CareType.WONDZORG, "Watergraafsmeer", "12345678", 1),
    (CareType.WONDZORG, "Watergraafsmeer", "87654321", 2),
    (CareType.WIJKVERPLEGING, "Watergraafsmeer", "12345678", 1),
    (CareType.PALLIATIEVE_ZORG, "Watergraafsmeer", "12345678", 1),
    (CareType.PALLIATIEVE_ZORG, "Watergraafsmeer", "87654321", 2),
    (CareType.WONDZORG, "De Pijp", "87654321", 1),
    (CareType.WIJKVERPLEGING, "Centrum", "87654321", 1),
    (CareType.WONDZORG, "Centrum", "87654321", 1),
]
HAP = ("01234599", "Huisartsenpost Amsterdam")
ACCOUNTS = {"gp": "Dr. A. Jansen", "nurse1": "Fatima (Thuiszorg Oost)", "nurse2": "Sanne"}


def load_demo(store: Store, data_dir: Path, server_name: str) -> dict[str, Any]:
    """Fill an empty directory with the demo region; return the demo facts to print."""
    path = data_dir / "demo.json"
    if path.exists():
        facts: dict[str, Any] = json.loads(path.read_text())
        return facts
    for agb, name in PRACTICES:
        store.add_org("practice", name, agb=agb, ura=None)
    store.add_org("hap", HAP[1], agb=HAP[0], ura=None)
    store.add_practitioner(
        PRACTICES[0][0], "Dr. A. Jansen", agb="01000001", matrix_id=f"@gp:{server_name}"
    )
    for ura, name, team, members in PROVIDERS:
        store.add_org("provider", name, agb=None, ura=ura)
        store.add_team(ura, team, [f"@{m}:{server_name}" for m in members])
    for wijk, ranges in WIJKEN.items():
        store.add_wijk(wijk, ranges)
    for care_type, wijk, ura, rank in ROUTES:
        store.add_route(care_type, None, None, ura, rank=rank, wijk=wijk)
    tokens = {}
    for agb, name in PRACTICES:
        _, token = store.add_client(agb, f"demo HIS of {name}")
        tokens[agb] = token
    facts = {
        "tokens": tokens,
        "accounts": {
            local: {
                "user_id": f"@{local}:{server_name}",
                "password": secrets.token_urlsafe(9),
                "displayname": display,
            }
            for local, display in ACCOUNTS.items()
        },
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(facts, fh, indent=2)
    return facts
