"""The bridge's own side of the homeserver allow-list: with ``allowed_servers`` set, an
event from any other server is no party to a case (the policy module keeps such users
out of the rooms; this keeps their events out of the bridge should one slip through)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import text

from bridge import chat
from bridge.config import ConfigError, generate_config, load_settings
from bridge.service import Bridge
from bridge.web.app import create_app
from tests.support.examples import region


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


def configured(tmp_path: Path, **changes: object) -> Path:
    path = generate_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


def test_permissions_decide_who_may_start_cases_and_who_is_ignored(tmp_path: Path) -> None:
    permissions = {"*": "user", "localhost": "start", "@blocked:localhost": "none"}
    settings = load_settings(configured(tmp_path, permissions=permissions))
    assert settings.permission("@gp:localhost") == "start"  # the server's entry
    assert settings.permission("@nurse:thuiszorg.nl") == "user"  # "*"
    assert settings.permission("@blocked:localhost") == "none"  # the user's own entry wins
    with pytest.raises(ConfigError, match="permissions"):
        load_settings(configured(tmp_path / "bad", permissions={"*": "root"}))

    with TestClient(create_app(settings, run_bridge=False)) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        region(bridge.store)
        bridge.store.add_practitioner(
            "01234567", "Dr. Elders", agb="01000009", matrix_id="@dr:elders.example"
        )
        said: list[tuple[str, str]] = []

        async def say(room_id: str, text: str, txn_id: str, **_: object) -> None:
            said.append((room_id, text))

        bridge._say = say  # type: ignore[method-assign]
        events = [
            {
                "event_id": "$blocked",
                "room_id": "!dm1:localhost",
                "sender": "@blocked:localhost",
                "type": "m.room.message",
                "content": {"msgtype": "m.text", "body": "!help"},
            },
            {
                "event_id": "$start",
                "room_id": "!dm2:localhost",
                "sender": "@dr:elders.example",
                "type": "m.room.message",
                "content": {
                    "msgtype": "m.text",
                    "body": "!nieuw 1092AB wondzorg X (01-01-1950), y",
                },
            },
        ]
        assert bridge.on_transaction("t1", events)
        for pending in bridge.store.due_events():
            asyncio.run(bridge._handle_event(pending))
        # The blocked user gets nothing at all; the GP of a "user" server is told why.
        assert said == [("!dm2:localhost", chat.NOT_PERMITTED)]
        assert bridge.store.search_communications(bridge.store.find_org("01234567"))[1] == 0
