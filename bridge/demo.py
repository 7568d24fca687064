"""The demo region of the embedded stack: two practices, two providers, a few Amsterdam routes.

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
# (care type, PC4 from, PC4 to, provider URA, rank)
ROUTES = [
    (CareType.WONDZORG, 1091, 1098, "12345678", 1),
    (CareType.WIJKVERPLEGING, 1091, 1098, "12345678", 1),
    (CareType.PALLIATIEVE_ZORG, 1091, 1098, "12345678", 1),
    (CareType.PALLIATIEVE_ZORG, 1091, 1098, "87654321", 2),
    (CareType.WONDZORG, 1071, 1079, "87654321", 1),
    (CareType.WIJKVERPLEGING, 1011, 1018, "87654321", 1),
    (CareType.WONDZORG, 1011, 1018, "87654321", 1),
]
ACCOUNTS = {"gp": "Dr. A. Jansen", "nurse1": "Fatima (Thuiszorg Oost)", "nurse2": "Sanne"}


def load_demo(store: Store, data_dir: Path, server_name: str) -> dict[str, Any]:
    """Fill an empty directory with the demo region; return the demo facts to print."""
    path = data_dir / "demo.json"
    if path.exists():
        facts: dict[str, Any] = json.loads(path.read_text())
        return facts
    for agb, name in PRACTICES:
        store.add_org("practice", name, agb=agb, ura=None)
    for ura, name, team, members in PROVIDERS:
        store.add_org("provider", name, agb=None, ura=ura)
        store.add_team(ura, team, [f"@{m}:{server_name}" for m in members])
    for care_type, low, high, ura, rank in ROUTES:
        store.add_route(care_type, low, high, ura, rank=rank)
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
