"""The bridge's own side of the homeserver allow-list: with ``allowed_servers`` set, an
event from any other server is no party to a case (the policy module keeps such users
out of the rooms; this keeps their events out of the bridge should one slip through)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import text

from bridge.config import generate_config, load_settings
from bridge.service import Bridge
from bridge.web.app import create_app


def test_events_from_servers_outside_the_list_are_ignored(tmp_path: Path) -> None:
    path = generate_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["homeserver"]["allowed_servers"] = ["thuiszorg-oost.nl"]
    path.write_text(yaml.safe_dump(config))
    with TestClient(create_app(load_settings(path), run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        assert bridge._server_allowed("@nurse:thuiszorg-oost.nl")
        assert bridge._server_allowed("@gp:localhost")  # the bridge's own homeserver
        assert not bridge._server_allowed("@x:elders.example")
        event = {
            "event_id": "$from-elsewhere",
            "room_id": "!case:localhost",
            "sender": "@x:elders.example",
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "!status"},
        }
        assert bridge.on_transaction("t1", [event])
        (pending,) = bridge.store.due_events()
        asyncio.run(bridge._handle_event(pending))
        assert bridge.store.due_events() == []  # handled: ignored, not left to retry
        with bridge.store.session() as s:
            state = s.execute(
                text("SELECT state FROM inbound_events WHERE event_id = '$from-elsewhere'")
            ).scalar_one()
        assert state == "ignored"
